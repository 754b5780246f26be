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

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/// What vtmove observes of a MoveTables workflow.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MoveTablesWorkflowStatus {
    /// The metadata.generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Where the workflow is, in one word: Pending (not acted on yet), Creating, Copying,
    /// Running (replicating, traffic as declared), SwitchingReads, SwitchingWrites, Switched (all
    /// traffic on the target, ready to complete), Reversing, Completing, Completed, Cancelling,
    /// Cancelled, Blocked (see blockers), Degraded (see the Degraded condition) or Paused. The
    /// conditions carry the detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<WorkflowPhase>,

    /// The workflow's traffic state in Vitess's own words, e.g. `All Reads Switched. Writes Not
    /// Switched`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_state: Option<String>,

    /// Which keyspace is observed serving each kind of traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<ObservedTraffic>,

    /// Largest replication lag of the forward streams, in seconds. Unset while streams are
    /// copying or when unknown. Updated when it moves by 5 seconds or more, so a steady workflow
    /// does not rewrite its status on every heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_seconds: Option<i64>,

    /// The same lag for people: a duration such as `2s`, or `copying` during the copy phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<String>,

    /// Standard conditions: Ready, Progressing, Degraded, CopyCompleted, ReadsSwitched,
    /// WritesSwitched, Blocked, Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// One row per VReplication stream: the forward streams on the target primaries, then the
    /// reverse streams on the source primaries once writes are switched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamStatus>,

    /// Why the next step cannot run, one entry per failing pre-check. Empty when nothing blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,

    /// How many times vtmove has repaired this workflow (an invariant violation or an
    /// interrupted transition found and fixed).
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0))]
    pub heals: i64,

    /// The latest repair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heal: Option<HealRecord>,

    /// Moved tables vtmove created on the target keyspace. Cancelling drops only these: a table
    /// of the same name that was there before holds someone else's data and is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_TABLES))]
    pub created_tables: Vec<String>,

    /// Names recorded before vtmove's first change to Vitess. Cleanup (cancel on deletion) uses
    /// these, never the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<WorkflowIdentity>,

    /// Consecutive failures of the step vtmove is retrying, for backoff that survives restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryStatus>,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

impl MoveTablesWorkflowStatus {
    /// Sets one condition; see [`condition::set_condition`].
    pub fn set_condition(
        &mut self,
        update: ConditionUpdate,
        observed_generation: Option<i64>,
        now: &Time,
    ) -> bool {
        condition::set_condition(&mut self.conditions, update, observed_generation, now)
    }

    /// Adds every MoveTablesWorkflow condition that is missing, as `Unknown`.
    pub fn ensure_conditions(&mut self, observed_generation: Option<i64>, now: &Time) -> bool {
        condition::ensure_conditions(
            &mut self.conditions,
            &condition::types::MOVE_TABLES_WORKFLOW,
            observed_generation,
            now,
        )
    }

    /// Sets `maxLagSeconds` and `lag` together: `Some(seconds)` for a replicating workflow,
    /// `None` while copying (shown as `copying`).
    pub fn set_lag(&mut self, max_lag: Option<Duration>) {
        match max_lag {
            Some(d) => {
                self.max_lag_seconds = Some(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                self.lag = Some(format_duration(Duration::from_secs(d.as_secs())));
            }
            None => {
                self.max_lag_seconds = None;
                self.lag = Some("copying".to_string());
            }
        }
    }
}

/// Where a workflow is, in one word.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = drop_type_description)]
pub enum WorkflowPhase {
    /// Accepted; vtmove has not acted on it yet.
    Pending,
    /// Creating the workflow: target schema and VSchema, streams, routing rules, denied tables.
    Creating,
    /// The streams are copying rows.
    Copying,
    /// The streams are replicating and traffic is where the spec puts it; nothing to do.
    Running,
    /// Moving replica and/or rdonly reads.
    SwitchingReads,
    /// Running the write cutover.
    SwitchingWrites,
    /// All traffic is served by the target and the reverse workflow runs; ready to complete.
    Switched,
    /// Moving traffic back to the source keyspace.
    Reversing,
    /// Running MoveTables complete.
    Completing,
    /// Done: the tables live in the target keyspace and the workflow is gone.
    Completed,
    /// Running MoveTables cancel.
    Cancelling,
    /// Cancelled: the tables stay in the source keyspace and the workflow is gone.
    Cancelled,
    /// The next step waits on a failing pre-check; see `blockers` and the Blocked condition.
    Blocked,
    /// An invariant is violated or a stream is in error; vtmove is repairing what it can; see
    /// the Degraded condition.
    Degraded,
    /// `spec.paused` is set; vtmove changes nothing.
    Paused,
}

impl WorkflowPhase {
    /// Whether the workflow has ended (completed or cancelled) and nothing is left to do.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }
}

/// Which keyspace is observed serving each kind of traffic.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedTraffic {
    /// Replica reads.
    #[serde(default)]
    pub replica: ObservedSide,
    /// Rdonly reads.
    #[serde(default)]
    pub rdonly: ObservedSide,
    /// Primary traffic (writes).
    #[serde(default)]
    pub primary: ObservedSide,
}

/// Which keyspace is observed serving a kind of traffic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = drop_type_description)]
pub enum ObservedSide {
    /// The source keyspace, in every cell.
    Source,
    /// The target keyspace, in every cell.
    Target,
    /// The target in some cells, the source in the others.
    Partial,
    /// Not observed, or the routing is inconsistent.
    #[default]
    Unknown,
}

impl From<TrafficSide> for ObservedSide {
    fn from(value: TrafficSide) -> Self {
        match value {
            TrafficSide::Source => Self::Source,
            TrafficSide::Target => Self::Target,
        }
    }
}

/// Direction of a stream relative to the workflow.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = drop_type_description)]
pub enum StreamDirection {
    /// Source to target: the workflow itself, on the target primaries.
    Forward,
    /// Target to source: the reverse workflow, on the source primaries, after the write cutover.
    Reverse,
}

/// One VReplication stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// Forward (the workflow) or Reverse (the reverse workflow).
    pub direction: StreamDirection,
    /// Keyspace of the shard that runs the stream (the target for forward streams).
    pub keyspace: String,
    /// Shard that runs the stream.
    pub shard: String,
    /// The stream's id in `_vt.vreplication` on that shard's primary.
    pub id: i64,
    /// Alias of the primary tablet running the stream, e.g. `zone1-0000000100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablet: Option<String>,
    /// The shard the stream reads from, as `keyspace/shard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_shard: Option<String>,
    /// The stream's state as Vitess reports it: `Init`, `Copying`, `Running`, `Stopped`,
    /// `Error`, `Lagging` or `Unknown`.
    pub state: String,
    /// GTID position the stream has applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// GTID position at which the stream stops, if one is set (cutover, stop-after-copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_position: Option<String>,
    /// Replication lag in seconds; unset while copying or unknown. Updated when it moves by 5
    /// seconds or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    /// Rows copied so far in the copy phase.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub rows_copied: i64,
    /// How many copy cycles the stream has run. Vitess copies in bounded cycles that can end in
    /// a MySQL error (such as 3024, query timeout) and resume from the bookmark: progress, not
    /// failure.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub copy_cycles: i64,
    /// The stream's message (`_vt.vreplication.message`), e.g. an error or `FROZEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Copy-phase bookmarks, one per table still being copied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bookmarks: Vec<CopyBookmark>,
}

/// Where the copy of one table will resume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CopyBookmark {
    /// The table being copied.
    pub table: String,
    /// The last primary key copied (`_vt.copy_state.lastpk`, as text). Unset before the first
    /// row, and always unless the operator runs with `--publish-row-data` (key values are row
    /// data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pk: Option<String>,
}

/// A failing pre-check that keeps the next step from running.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Blocker {
    /// CamelCase name of the pre-check, e.g. `ReplicationLagTooHigh`.
    pub reason: String,
    /// What fails and how to unblock it.
    pub message: String,
}

/// One repair vtmove made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealRecord {
    /// When the repair was made.
    pub time: Time,
    /// CamelCase name of what was wrong, e.g. `SingleWriterViolated`.
    pub reason: String,
    /// What was repaired.
    pub message: String,
}

/// Names vtmove records before its first change to Vitess.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowIdentity {
    /// The Vitess workflow name.
    pub workflow: String,
    /// The reverse workflow name (`<workflow>_reverse`).
    pub reverse_workflow: String,
    /// The source keyspace.
    pub source_keyspace: String,
    /// The target keyspace.
    pub target_keyspace: String,
    /// The moved tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
}

/// Consecutive failures of one step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryStatus {
    /// The step being retried (a CamelCase step name).
    pub step: String,
    /// Consecutive failures so far.
    #[schemars(range(min = 0))]
    pub attempts: i64,
    /// When the latest failure happened.
    pub last_failure_time: Time,
    /// The latest error.
    pub last_error: String,
}

// ---------------------------------------------------------------------------------------------
// Names and validation
// ---------------------------------------------------------------------------------------------

impl MoveTablesWorkflow {
    /// The Vitess workflow name: `spec.workflow`, or metadata.name when unset.
    pub fn workflow_name(&self) -> String {
        self.spec
            .workflow
            .clone()
            .unwrap_or_else(|| self.name_any())
    }

    /// The reverse workflow name, `<workflow>_reverse`.
    pub fn reverse_workflow_name(&self) -> String {
        format!("{}{REVERSE_WORKFLOW_SUFFIX}", self.workflow_name())
    }

    /// Validates the spec (see [`MoveTablesWorkflowSpec::validate`]) and, when `spec.workflow` is
    /// unset, that metadata.name can serve as the workflow name.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = self.spec.validate().err().unwrap_or_default();
        if self.spec.workflow.is_none() {
            let name = self.name_any();
            let before = errors.len();
            check_workflow_name(&mut errors, "metadata.name", &name);
            for e in &mut errors[before..] {
                e.message
                    .push_str(" (spec.workflow is unset, so metadata.name is the workflow name)");
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn check_workflow_name(errors: &mut Vec<FieldError>, field: &str, name: &str) {
    let before = errors.len();
    check_name(
        errors,
        field,
        name,
        NAME_PATTERN,
        NAME_MAX_LENGTH,
        "workflow name",
    );
    if errors.len() == before && name.ends_with(REVERSE_WORKFLOW_SUFFIX) {
        errors.push(FieldError::new(
            field,
            format!(
                "workflow name {name:?} must not end in {REVERSE_WORKFLOW_SUFFIX:?}, which Vitess \
                 reserves for reverse workflows"
            ),
        ));
    }
}

fn check_duration_range(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &DurationString,
    min: Duration,
    max: Duration,
) {
    match value.to_duration() {
        Err(e) => errors.push(FieldError::new(field, e.to_string())),
        Ok(d) if d < min || d > max => errors.push(FieldError::new(
            field,
            format!(
                "{value} is out of range: must be between {} and {}",
                format_duration(min),
                format_duration(max)
            ),
        )),
        Ok(_) => {}
    }
}

impl MoveTablesWorkflowSpec {
    /// Checks everything about the spec that does not need Vitess: the schema's patterns and
    /// limits, the CEL rules that involve a single version of the object (duration ranges
    /// included), and what neither expresses (names Vitess reserves, all-digit table names).
    ///
    /// Returns every problem found, not just the first.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();

        if let Some(workflow) = &self.workflow {
            check_workflow_name(&mut errors, "spec.workflow", workflow);
        }
        check_name(
            &mut errors,
            "spec.sourceKeyspace",
            &self.source_keyspace,
            NAME_PATTERN,
            NAME_MAX_LENGTH,
            "keyspace name",
        );
        check_name(
            &mut errors,
            "spec.targetKeyspace",
            &self.target_keyspace,
            NAME_PATTERN,
            NAME_MAX_LENGTH,
            "keyspace name",
        );
        if self.source_keyspace == self.target_keyspace {
            errors.push(FieldError::new(
                "spec.targetKeyspace",
                "targetKeyspace must differ from sourceKeyspace",
            ));
        }

        if self.tables.is_empty() {
            errors.push(FieldError::new(
                "spec.tables",
                "at least one table is required",
            ));
        }
        check_name_list(
            &mut errors,
            "spec.tables",
            &self.tables,
            TABLE_NAME_PATTERN,
            TABLE_NAME_MAX_LENGTH,
            MAX_TABLES,
            "table",
        );
        for (i, table) in self.tables.iter().enumerate() {
            if !table.is_empty() && table.bytes().all(|b| b.is_ascii_digit()) {
                errors.push(FieldError::new(
                    format!("spec.tables[{i}]"),
                    format!("table name {table:?} is all digits, which MySQL does not allow"),
                ));
            }
            if table.starts_with("_vt_") {
                errors.push(FieldError::new(
                    format!("spec.tables[{i}]"),
                    format!("table {table:?} is a Vitess internal table and cannot be moved"),
                ));
            }
        }

        check_name_list(
            &mut errors,
            "spec.cells",
            &self.cells,
            NAME_PATTERN,
            NAME_MAX_LENGTH,
            MAX_CELLS,
            "cell",
        );
        let mut tablet_types = BTreeSet::new();
        for (i, t) in self.tablet_types.iter().enumerate() {
            if !tablet_types.insert(*t) {
                errors.push(FieldError::new(
                    format!("spec.tabletTypes[{i}]"),
                    format!("duplicate tablet type {:?}", t.as_str()),
                ));
            }
        }
        if self.tablet_selection_preference == Some(TabletSelectionPreference::InOrder)
            && self.tablet_types.is_empty()
        {
            errors.push(FieldError::new(
                "spec.tabletSelectionPreference",
                "inOrder needs tabletTypes to say the order",
            ));
        }

        let traffic = &self.traffic;
        if traffic.cells.is_empty() {
            // Unset: every cell.
        } else {
            check_name_list(
                &mut errors,
                "spec.traffic.cells",
                &traffic.cells,
                NAME_PATTERN,
                NAME_MAX_LENGTH,
                MAX_CELLS,
                "cell",
            );
        }
        if traffic.primary == TrafficSide::Target
            && (traffic.replica != TrafficSide::Target
                || traffic.rdonly != TrafficSide::Target
                || !traffic.cells.is_empty())
        {
            errors.push(FieldError::new(
                "spec.traffic.primary",
                "primary can be Target only when replica and rdonly are Target in every cell \
                 (traffic.cells unset)",
            ));
        }
        match self.lifecycle {
            Lifecycle::Complete if !traffic.all_on(TrafficSide::Target) => {
                errors.push(FieldError::new(
                    "spec.lifecycle",
                    "lifecycle Complete requires traffic.replica, traffic.rdonly and \
                     traffic.primary to be Target",
                ));
            }
            Lifecycle::Cancel if !traffic.all_on(TrafficSide::Source) => {
                errors.push(FieldError::new(
                    "spec.lifecycle",
                    "lifecycle Cancel requires traffic.replica, traffic.rdonly and \
                     traffic.primary to be Source",
                ));
            }
            _ => {}
        }

        check_duration_range(
            &mut errors,
            "spec.cutover.maxReplicationLagAllowed",
            &self.cutover.max_replication_lag_allowed,
            MIN_MAX_REPLICATION_LAG,
            MAX_MAX_REPLICATION_LAG,
        );
        check_duration_range(
            &mut errors,
            "spec.cutover.timeout",
            &self.cutover.timeout,
            MIN_CUTOVER_TIMEOUT,
            MAX_CUTOVER_TIMEOUT,
        );

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MoveTablesWorkflowSpec {
        MoveTablesWorkflowSpec {
            workflow: None,
            source_keyspace: "commerce".into(),
            target_keyspace: "customer".into(),
            tables: vec!["customer".into(), "corder".into()],
            cells: vec![],
            tablet_types: vec![],
            tablet_selection_preference: None,
            on_ddl: OnDdl::default(),
            defer_secondary_keys: false,
            stop_after_copy: false,
            traffic: TrafficSpec::default(),
            lifecycle: Lifecycle::default(),
            complete: CompleteOptions::default(),
            cancel: CancelOptions::default(),
            cutover: CutoverSpec::default(),
            paused: false,
        }
    }

    fn fields(result: Result<(), Vec<FieldError>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn minimal_spec_is_valid() {
        assert_eq!(spec().validate(), Ok(()));
    }

    #[test]
    fn defaults_match_vitess() {
        let s: MoveTablesWorkflowSpec = serde_json::from_value(serde_json::json!({
            "sourceKeyspace": "commerce",
            "targetKeyspace": "customer",
            "tables": ["customer"],
        }))
        .unwrap();
        assert_eq!(s.on_ddl, OnDdl::Ignore);
        assert_eq!(s.lifecycle, Lifecycle::Active);
        assert!(s.traffic.all_on(TrafficSide::Source));
        assert_eq!(
            s.cutover.max_replication_lag_allowed.to_duration(),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(s.cutover.timeout.to_duration(), Ok(Duration::from_secs(30)));
        assert!(s.cutover.enable_reverse_replication);
        assert!(!s.cutover.force);
        assert!(!s.paused);
    }

    #[test]
    fn wire_names() {
        let mut s = spec();
        s.on_ddl = OnDdl::ExecIgnore;
        s.tablet_types = vec![SourceTabletType::Rdonly];
        s.tablet_selection_preference = Some(TabletSelectionPreference::InOrder);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["onDDL"], "EXEC_IGNORE");
        assert_eq!(v["tabletTypes"][0], "rdonly");
        assert_eq!(v["tabletSelectionPreference"], "inOrder");
        assert_eq!(v["traffic"]["primary"], "Source");
        assert_eq!(v["lifecycle"], "Active");
        assert_eq!(v["cutover"]["maxReplicationLagAllowed"], "30s");
        assert_eq!(v["complete"]["ignoreSourceKeyspace"], false);
    }

    #[test]
    fn duplicate_and_malformed_tables() {
        let mut s = spec();
        s.tables = vec![
            "customer".into(),
            "customer".into(),
            "bad-name".into(),
            "123".into(),
            "_vt_hld_x".into(),
        ];
        assert_eq!(
            fields(s.validate()),
            [
                "spec.tables[1]",
                "spec.tables[2]",
                "spec.tables[3]",
                "spec.tables[4]"
            ]
        );
        s.tables.clear();
        assert_eq!(fields(s.validate()), ["spec.tables"]);
    }

    #[test]
    fn same_keyspace_twice() {
        let mut s = spec();
        s.target_keyspace = "commerce".into();
        assert_eq!(fields(s.validate()), ["spec.targetKeyspace"]);
    }

    #[test]
    fn reserved_and_bad_workflow_names() {
        let mut s = spec();
        s.workflow = Some("move_reverse".into());
        assert_eq!(fields(s.validate()), ["spec.workflow"]);
        s.workflow = Some("a.b".into());
        assert_eq!(fields(s.validate()), ["spec.workflow"]);
        s.workflow = Some("x".repeat(64));
        assert_eq!(fields(s.validate()), ["spec.workflow"]);
        s.workflow = Some("commerce2customer".into());
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn metadata_name_stands_in_for_workflow() {
        let mut mtw = MoveTablesWorkflow::new("move.customers", spec());
        let errors = mtw.validate().unwrap_err();
        assert_eq!(errors[0].field, "metadata.name");
        assert!(errors[0].message.contains("spec.workflow is unset"));
        assert_eq!(mtw.workflow_name(), "move.customers");

        mtw.spec.workflow = Some("move_customers".into());
        assert_eq!(mtw.validate(), Ok(()));
        assert_eq!(mtw.workflow_name(), "move_customers");
        assert_eq!(mtw.reverse_workflow_name(), "move_customers_reverse");
    }

    #[test]
    fn duration_ranges() {
        let mut s = spec();
        s.cutover.timeout = "500ms".into();
        s.cutover.max_replication_lag_allowed = "2h".into();
        assert_eq!(
            fields(s.validate()),
            [
                "spec.cutover.maxReplicationLagAllowed",
                "spec.cutover.timeout"
            ]
        );
        s.cutover.timeout = "10m".into();
        s.cutover.max_replication_lag_allowed = "1s".into();
        assert_eq!(s.validate(), Ok(()));
        s.cutover.timeout = "10m1s".into();
        assert_eq!(fields(s.validate()), ["spec.cutover.timeout"]);
        s.cutover.timeout = "30".into();
        let errors = s.validate().unwrap_err();
        assert!(errors[0].message.contains("expected a unit"));
    }

    #[test]
    fn writes_only_after_reads_everywhere() {
        let mut s = spec();
        s.traffic.primary = TrafficSide::Target;
        assert_eq!(fields(s.validate()), ["spec.traffic.primary"]);
        s.traffic.replica = TrafficSide::Target;
        s.traffic.rdonly = TrafficSide::Target;
        assert_eq!(s.validate(), Ok(()));
        s.traffic.cells = vec!["zone1".into()];
        assert_eq!(fields(s.validate()), ["spec.traffic.primary"]);
    }

    #[test]
    fn reads_cell_by_cell() {
        let mut s = spec();
        s.traffic.replica = TrafficSide::Target;
        s.traffic.cells = vec!["zone1".into(), "zone1".into(), "bad cell".into()];
        assert_eq!(
            fields(s.validate()),
            ["spec.traffic.cells[1]", "spec.traffic.cells[2]"]
        );
    }

    #[test]
    fn lifecycle_must_agree_with_traffic() {
        let mut s = spec();
        s.lifecycle = Lifecycle::Complete;
        assert_eq!(fields(s.validate()), ["spec.lifecycle"]);
        s.traffic = TrafficSpec {
            replica: TrafficSide::Target,
            rdonly: TrafficSide::Target,
            primary: TrafficSide::Target,
            cells: vec![],
        };
        assert_eq!(s.validate(), Ok(()));
        s.lifecycle = Lifecycle::Cancel;
        assert_eq!(fields(s.validate()), ["spec.lifecycle"]);
        s.traffic = TrafficSpec::default();
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn tablet_types() {
        let mut s = spec();
        s.tablet_selection_preference = Some(TabletSelectionPreference::InOrder);
        assert_eq!(fields(s.validate()), ["spec.tabletSelectionPreference"]);
        s.tablet_types = vec![
            SourceTabletType::Replica,
            SourceTabletType::Primary,
            SourceTabletType::Replica,
        ];
        assert_eq!(fields(s.validate()), ["spec.tabletTypes[2]"]);
    }

    #[test]
    fn status_lag() {
        let mut status = MoveTablesWorkflowStatus::default();
        status.set_lag(Some(Duration::from_millis(2500)));
        assert_eq!(status.max_lag_seconds, Some(2));
        assert_eq!(status.lag.as_deref(), Some("2s"));
        status.set_lag(None);
        assert_eq!(status.max_lag_seconds, None);
        assert_eq!(status.lag.as_deref(), Some("copying"));
    }

    #[test]
    fn empty_status_serializes_to_empty_object() {
        let v = serde_json::to_value(MoveTablesWorkflowStatus::default()).unwrap();
        assert_eq!(v, serde_json::json!({}));
    }

    #[test]
    fn status_conditions_use_the_shared_setter() {
        use crate::api::condition::{ConditionStatus, reasons, types};
        use k8s_openapi::jiff::Timestamp;
        let now = Time(Timestamp::from_second(1_700_000_000).unwrap());
        let mut status = MoveTablesWorkflowStatus::default();
        assert!(status.ensure_conditions(Some(1), &now));
        assert_eq!(status.conditions.len(), 8);
        assert!(status.set_condition(
            ConditionUpdate::new(
                types::PAUSED,
                ConditionStatus::False,
                reasons::NOT_PAUSED,
                ""
            ),
            Some(1),
            &now,
        ));
        assert_eq!(status.conditions[7].type_, "Paused");
        assert_eq!(status.conditions[7].status, "False");
    }
}

//! What vtmove reports of a MoveTables workflow: the status and its parts.

use super::*;

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

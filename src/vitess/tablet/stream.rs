//! A typed view of VReplication streams, and the judgements vtmove makes about them.
//!
//! `ReadVReplicationWorkflow` returns one row of `_vt.vreplication` per stream. The planner needs
//! more than the stored columns: the state Vitess *displays* (a message mentioning an error makes a
//! stream show as `Error`), the FROZEN and "stopped for cutover" markers left by a write cutover,
//! the transaction lag that gates a cutover, and copy progress. This module derives all of that
//! with pure functions so the planner and its tests need no tablet.
//!
//! Two lessons from Vitess issues shape the rules here:
//! - **Copy cycles are progress (#17778).** A copy phase is cut into cycles; a cycle can end with
//!   an interrupted statement (MySQL 3024 when `MAX_EXECUTION_TIME` fires, 1317, lock wait timeout,
//!   deadlock, lost connection), after which the stream resumes from its `_vt.copy_state`
//!   bookmark. Such a message while copying is classified [`MessageClass::CopyCycleEnded`], never
//!   as a stream error, and [`CopyProgress`] counts the cycles.
//! - **Lag while copying is infinite.** Like Vitess's transaction lag, a stream still copying
//!   has no meaningful lag, so [`Lag::Copying`] never passes a lag gate.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::prototext::{PrototextError, parse_query_result};
use super::result::{ResultError, Table};
use crate::vitess::proto::binlogdata::{
    BinlogSource, VReplicationWorkflowState, VReplicationWorkflowSubType, VReplicationWorkflowType,
};
use crate::vitess::proto::query::QueryResult;
use crate::vitess::proto::tabletmanagerdata::{
    ReadVReplicationWorkflowResponse, read_v_replication_workflow_response::Stream,
};
use crate::vitess::proto::topodata::TabletType;
use crate::vitess::proto::vttime;

/// The message Vitess writes on the old side's streams once writes are switched.
pub const FROZEN_MESSAGE: &str = "FROZEN";
/// The message Vitess (and vtmove) writes on a stream it stopped during a write cutover.
pub const STOPPED_FOR_CUTOVER_MESSAGE: &str = "stopped for cutover";

/// MySQL errors that interrupt a copy cycle without harming the stream: VReplication retries and
/// resumes from the last bookmark. `(code, a phrase of MySQL's message text)`; the phrase catches
/// messages that lost their error number on the way through gRPC.
pub const EPHEMERAL_COPY_ERRORS: &[(u16, &str)] = &[
    // ER_QUERY_TIMEOUT: MAX_EXECUTION_TIME (the copy-phase duration) ran out.
    (3024, "maximum statement execution time exceeded"),
    // ER_QUERY_INTERRUPTED.
    (1317, "query execution was interrupted"),
    // ER_LOCK_WAIT_TIMEOUT.
    (1205, "lock wait timeout exceeded"),
    // ER_LOCK_DEADLOCK.
    (1213, "deadlock found when trying to get lock"),
    // CR_SERVER_LOST.
    (2013, "lost connection to mysql server"),
    // CR_SERVER_GONE_ERROR.
    (2006, "mysql server has gone away"),
];

/// MySQL's catch-all "unknown error" code, which Vitess uses to wrap other errors; it does not
/// make an otherwise ephemeral message a real error.
const ER_UNKNOWN_ERROR: u16 = 1105;

/// True when `code` is one of the MySQL errors that merely end a copy cycle.
pub fn is_ephemeral_mysql_error(code: u16) -> bool {
    EPHEMERAL_COPY_ERRORS.iter().any(|&(c, _)| c == code)
}

/// Every MySQL error number mentioned in `message` (`errno 3024`, `Error 1205`, `error code: 2013`).
pub fn mysql_error_codes(message: &str) -> Vec<u16> {
    let lower = message.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut codes = Vec::new();
    let mut search = 0;
    while let Some(found) = lower[search..].find("err") {
        let mut i = search + found + 3;
        search = i;
        // "errno" or "error", optionally followed by " code" and separators.
        if lower[i..].starts_with("no") {
            i += 2;
        } else if lower[i..].starts_with("or") {
            i += 2;
            let rest = lower[i..].trim_start();
            if rest.starts_with("code") {
                i = lower.len() - rest.len() + 4;
            }
        } else {
            continue;
        }
        while i < bytes.len() && matches!(bytes[i], b' ' | b':' | b'=' | b'#' | b'(') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        // A word boundary after the digits, and a plausible MySQL error number.
        let boundary = bytes.get(i).is_none_or(|b| !b.is_ascii_alphanumeric());
        if (4..=5).contains(&(i - start))
            && boundary
            && let Ok(code) = lower[start..i].parse::<u16>()
            && code >= 1000
            && !codes.contains(&code)
        {
            codes.push(code);
        }
    }
    codes
}

/// The ephemeral MySQL error `message` reports, if it reports one and no other specific error.
///
/// An error number wins over text; the text phrases are a fallback for messages whose number was
/// lost. A message that also names a different, non-ephemeral error number is a real error.
pub fn ephemeral_error_in(message: &str) -> Option<u16> {
    let codes = mysql_error_codes(message);
    let specific: Vec<u16> = codes
        .into_iter()
        .filter(|&c| c != ER_UNKNOWN_ERROR)
        .collect();
    if !specific.is_empty() {
        return if specific.iter().all(|&c| is_ephemeral_mysql_error(c)) {
            specific.first().copied()
        } else {
            None
        };
    }
    let lower = message.to_ascii_lowercase();
    EPHEMERAL_COPY_ERRORS
        .iter()
        .find(|(_, phrase)| lower.contains(phrase))
        .map(|&(code, _)| code)
}

/// What a stream's `message` column means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageClass {
    /// No message.
    Empty,
    /// `FROZEN`: writes were switched away from this workflow's target; the stream must not run.
    Frozen,
    /// The stream was stopped by a write cutover ("stopped for cutover").
    StoppedForCutover,
    /// An ephemeral MySQL error while copying: a copy cycle ended and the stream will resume from
    /// its bookmark. Progress, not failure (#17778).
    CopyCycleEnded {
        /// The MySQL error number (3024, 1317, 1205, 1213, 2013 or 2006).
        code: u16,
    },
    /// A real stream error.
    Error {
        /// The MySQL error number, when the message carries one.
        code: Option<u16>,
    },
    /// Any other informational text.
    Info,
}

impl MessageClass {
    /// True for a real stream error (not a copy-cycle end).
    pub fn is_error(&self) -> bool {
        matches!(self, MessageClass::Error { .. })
    }
}

/// Classifies a stream message. `copying` says whether the stream is in its copy phase: only there
/// does an ephemeral MySQL error mean "a copy cycle ended"; elsewhere it is a real error.
pub fn classify_message(message: &str, copying: bool) -> MessageClass {
    let trimmed = message.trim();
    if trimmed.is_empty() {
        return MessageClass::Empty;
    }
    if trimmed == FROZEN_MESSAGE {
        return MessageClass::Frozen;
    }
    let lower = trimmed.to_ascii_lowercase();
    if lower.contains(STOPPED_FOR_CUTOVER_MESSAGE) {
        return MessageClass::StoppedForCutover;
    }
    if copying && let Some(code) = ephemeral_error_in(trimmed) {
        return MessageClass::CopyCycleEnded { code };
    }
    // Vitess shows a stream as Error whenever its message mentions "error", whatever the case.
    if lower.contains("error") {
        let code = mysql_error_codes(trimmed)
            .into_iter()
            .find(|&c| c != ER_UNKNOWN_ERROR);
        return MessageClass::Error { code };
    }
    MessageClass::Info
}

/// Transaction lag of a stream or workflow, as Vitess computes it for the cutover gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lag {
    /// Replicating, this far behind the source (now − newest of transaction time and heartbeat).
    Behind(Duration),
    /// Neither a transaction timestamp nor a heartbeat was ever recorded: unknown, so infinite.
    NoTimestamp,
    /// Still copying: lag is infinite by definition and blocks a cutover.
    Copying,
}

impl Lag {
    /// The finite lag, or `None` when it is infinite (copying or never recorded).
    pub fn duration(&self) -> Option<Duration> {
        match self {
            Lag::Behind(d) => Some(*d),
            Lag::NoTimestamp | Lag::Copying => None,
        }
    }

    /// True when the lag is finite and at most `max` (the cutover's `maxReplicationLagAllowed`).
    pub fn within(&self, max: Duration) -> bool {
        self.duration().is_some_and(|d| d <= max)
    }

    /// The worse of two lags: any infinite lag beats any finite one, copying beats unknown.
    pub fn worst(self, other: Lag) -> Lag {
        fn rank(l: &Lag) -> (u8, Duration) {
            match l {
                Lag::Behind(d) => (0, *d),
                Lag::NoTimestamp => (1, Duration::ZERO),
                Lag::Copying => (2, Duration::ZERO),
            }
        }
        if rank(&other) > rank(&self) {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Lag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lag::Behind(d) => write!(f, "{}s", d.as_secs()),
            Lag::NoTimestamp => f.write_str("unknown"),
            Lag::Copying => f.write_str("copying"),
        }
    }
}

/// Converts a `vttime.Time`; zero (never set) is `None`.
pub fn vttime_to_system(t: Option<&vttime::Time>) -> Option<SystemTime> {
    let t = t?;
    if t.seconds <= 0 {
        return None;
    }
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanoseconds).unwrap_or(0).min(999_999_999);
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Where a stream reads from: one source shard and the tables its filter rules select.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSource {
    /// Source keyspace.
    pub keyspace: String,
    /// Source shard (`0`, `-80`, ...).
    pub shard: String,
    /// Tables the stream copies: the BinlogSource `tables` list, else the filter rules' literal
    /// `match` values (regexp rules starting with `/` and `exclude` rules are left out).
    pub tables: Vec<String>,
    /// The filter rules as `(match, filter)` pairs, e.g. `("t", "select * from t")`.
    pub rules: Vec<(String, String)>,
}

impl StreamSource {
    /// Builds the view from a BinlogSource (absent → empty).
    pub fn from_binlog_source(bls: Option<&BinlogSource>) -> Self {
        let Some(bls) = bls else {
            return StreamSource::default();
        };
        let rules: Vec<(String, String)> = bls
            .filter
            .iter()
            .flat_map(|f| f.rules.iter())
            .map(|r| (r.r#match.clone(), r.filter.clone()))
            .collect();
        let tables = if bls.tables.is_empty() {
            rules
                .iter()
                .filter(|(m, f)| !m.starts_with('/') && f != "exclude")
                .map(|(m, _)| m.clone())
                .collect()
        } else {
            bls.tables.clone()
        };
        StreamSource {
            keyspace: bls.keyspace.clone(),
            shard: bls.shard.clone(),
            tables,
            rules,
        }
    }
}

/// One VReplication stream (`_vt.vreplication` row) with the judgements vtmove makes about it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStatus {
    /// Stream id (`_vt.vreplication.id`), the id `VReplicationWaitForPos` takes.
    pub id: i32,
    /// Source shard and tables.
    pub source: StreamSource,
    /// Stored state. Unknown numbers from a newer Vitess read as `Unknown`.
    pub state: VReplicationWorkflowState,
    /// Current position (flavor-prefixed GTID set); empty before the copy phase sets it.
    pub position: String,
    /// Stop position, when the stream is set to stop at one.
    pub stop_position: Option<String>,
    /// Status or error text.
    pub message: String,
    /// Rows copied so far (copy progress).
    pub rows_copied: i64,
    /// Last update of the row.
    pub time_updated: Option<SystemTime>,
    /// Source commit time of the last applied transaction.
    pub transaction_timestamp: Option<SystemTime>,
    /// Last heartbeat from the source.
    pub time_heartbeat: Option<SystemTime>,
    /// Last time the stream was throttled.
    pub time_throttled: Option<SystemTime>,
    /// Which component throttled it.
    pub component_throttled: String,
    /// Copy bookmarks from `_vt.copy_state`: `None` when not read, `Some(empty)` when the stream
    /// has no copy_state rows (its copy phase is over, or has not started).
    pub copy_state: Option<Vec<CopyBookmark>>,
}

impl StreamStatus {
    /// Builds the view of one stream of a `ReadVReplicationWorkflow` response.
    pub fn from_proto(stream: &Stream) -> Self {
        StreamStatus {
            id: stream.id,
            source: StreamSource::from_binlog_source(stream.bls.as_ref()),
            state: VReplicationWorkflowState::try_from(stream.state)
                .unwrap_or(VReplicationWorkflowState::Unknown),
            position: stream.pos.clone(),
            stop_position: (!stream.stop_pos.is_empty()).then(|| stream.stop_pos.clone()),
            message: stream.message.clone(),
            rows_copied: stream.rows_copied,
            time_updated: vttime_to_system(stream.time_updated.as_ref()),
            transaction_timestamp: vttime_to_system(stream.transaction_timestamp.as_ref()),
            time_heartbeat: vttime_to_system(stream.time_heartbeat.as_ref()),
            time_throttled: vttime_to_system(stream.time_throttled.as_ref()),
            component_throttled: stream.component_throttled.clone(),
            copy_state: None,
        }
    }

    /// True while the stream is in its copy phase: stored state Copying, or copy_state rows left.
    pub fn is_copying(&self) -> bool {
        self.state == VReplicationWorkflowState::Copying
            || self
                .copy_state
                .as_ref()
                .is_some_and(|rows| !rows.is_empty())
    }

    /// What the message means, given whether the stream is copying.
    pub fn message_class(&self) -> MessageClass {
        classify_message(&self.message, self.is_copying())
    }

    /// True when the stream carries the FROZEN marker (writes already switched away).
    pub fn is_frozen(&self) -> bool {
        self.message_class() == MessageClass::Frozen
    }

    /// True when a write cutover stopped this stream.
    pub fn is_stopped_for_cutover(&self) -> bool {
        self.message_class() == MessageClass::StoppedForCutover
    }

    /// The state to show and to plan on, derived the way Vitess displays it:
    /// - a real error message → `Error` (whatever the stored state);
    /// - an ephemeral copy-cycle end → `Copying`, even if the stored state is `Error`, because
    ///   the stream resumes from its bookmark (#17778);
    /// - stored `Running` with copy_state rows left → `Copying`;
    /// - otherwise the stored state.
    pub fn displayed_state(&self) -> VReplicationWorkflowState {
        match self.message_class() {
            MessageClass::Error { .. } => VReplicationWorkflowState::Error,
            MessageClass::CopyCycleEnded { .. } => VReplicationWorkflowState::Copying,
            _ if self.state == VReplicationWorkflowState::Running && self.is_copying() => {
                VReplicationWorkflowState::Copying
            }
            _ => self.state,
        }
    }

    /// Transaction lag at `now`: infinite while copying; otherwise `now` minus the newer of the
    /// last transaction's commit time and the last heartbeat (an idle source still heartbeats).
    /// A clock behind the tablet's reads as zero lag rather than an error.
    pub fn lag(&self, now: SystemTime) -> Lag {
        if self.is_copying() {
            return Lag::Copying;
        }
        match self.transaction_timestamp.max(self.time_heartbeat) {
            Some(t) => Lag::Behind(now.duration_since(t).unwrap_or(Duration::ZERO)),
            None => Lag::NoTimestamp,
        }
    }
}

/// A workflow as one target primary sees it: the typed `ReadVReplicationWorkflowResponse`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowStreams {
    /// Workflow name.
    pub workflow: String,
    /// Target database (`vt_<keyspace>` or the override).
    pub db_name: String,
    /// Cells to pick source tablets from (empty: the tablet's own cell).
    pub cells: Vec<String>,
    /// Source tablet types (unrecognised numbers are dropped).
    pub tablet_types: Vec<TabletType>,
    /// Workflow type (MoveTables, Reshard, ...); `None` for a number this build does not know.
    pub workflow_type: Option<VReplicationWorkflowType>,
    /// Workflow sub-type (None, Partial, AtomicCopy); `None` for an unknown number.
    pub workflow_sub_type: Option<VReplicationWorkflowSubType>,
    /// Secondary keys are created after the copy.
    pub defer_secondary_keys: bool,
    /// Options JSON as stored.
    pub options: String,
    /// Free-form tags.
    pub tags: String,
    /// The streams, one per source shard.
    pub streams: Vec<StreamStatus>,
}

impl WorkflowStreams {
    /// Builds the view. A response without streams means "no such workflow on this tablet"
    /// (Vitess answers an empty message), which is `None`.
    pub fn from_proto(resp: &ReadVReplicationWorkflowResponse) -> Option<Self> {
        if resp.streams.is_empty() && resp.workflow.is_empty() {
            return None;
        }
        Some(WorkflowStreams {
            workflow: resp.workflow.clone(),
            db_name: resp.db_name.clone(),
            cells: resp
                .cells
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            tablet_types: resp
                .tablet_types
                .iter()
                .filter_map(|&t| TabletType::try_from(t).ok())
                .collect(),
            workflow_type: VReplicationWorkflowType::try_from(resp.workflow_type).ok(),
            workflow_sub_type: VReplicationWorkflowSubType::try_from(resp.workflow_sub_type).ok(),
            defer_secondary_keys: resp.defer_secondary_keys,
            options: resp.options.clone(),
            tags: resp.tags.clone(),
            streams: resp.streams.iter().map(StreamStatus::from_proto).collect(),
        })
    }

    /// Hands each stream its copy bookmarks (from [`parse_copy_state`]); streams without rows get
    /// an empty list, which tells [`StreamStatus::is_copying`] the copy phase is over.
    pub fn attach_copy_state(&mut self, bookmarks: &[CopyBookmark]) {
        for stream in &mut self.streams {
            stream.copy_state = Some(
                bookmarks
                    .iter()
                    .filter(|b| b.stream_id == stream.id)
                    .cloned()
                    .collect(),
            );
        }
    }

    /// Stream ids, e.g. to build a copy_state query.
    pub fn stream_ids(&self) -> Vec<i32> {
        self.streams.iter().map(|s| s.id).collect()
    }

    /// True when any stream is FROZEN; Vitess treats the whole workflow as frozen then.
    pub fn is_frozen(&self) -> bool {
        self.streams.iter().any(StreamStatus::is_frozen)
    }

    /// True when any stream is still copying.
    pub fn is_copying(&self) -> bool {
        self.streams.iter().any(StreamStatus::is_copying)
    }

    /// Streams whose displayed state is Error (real errors only, copy-cycle ends excluded).
    pub fn errored_streams(&self) -> impl Iterator<Item = &StreamStatus> {
        self.streams
            .iter()
            .filter(|s| s.displayed_state() == VReplicationWorkflowState::Error)
    }

    /// The workflow's transaction lag: the worst stream lag, infinite if any stream copies.
    /// A workflow without streams has unknown lag.
    pub fn max_lag(&self, now: SystemTime) -> Lag {
        self.streams
            .iter()
            .map(|s| s.lag(now))
            .reduce(Lag::worst)
            .unwrap_or(Lag::NoTimestamp)
    }
}

/// Why a `lastpk` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LastPkError {
    /// The prototext itself is malformed.
    #[error("lastpk is not a valid QueryResult prototext: {0}")]
    Prototext(#[from] PrototextError),
    /// The result has no primary-key fields.
    #[error("lastpk has no fields")]
    NoFields,
    /// The result has fields but no row.
    #[error("lastpk has no row")]
    NoRow,
    /// The row's values do not match the fields.
    #[error("lastpk row has {got} values for {want} fields")]
    Arity {
        /// Values in the row.
        got: usize,
        /// Fields declared.
        want: usize,
    },
}

/// One column of a copy bookmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkValue {
    /// Column name.
    pub name: String,
    /// Column type (`query.Type` number).
    pub r#type: i32,
    /// Raw value (`None` = NULL).
    pub value: Option<Vec<u8>>,
}

/// The last primary key copied for a table: where the next copy cycle resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastPk {
    /// The primary-key columns and their values, in key order.
    pub columns: Vec<PkValue>,
}

impl LastPk {
    /// Parses the prototext stored in `_vt.copy_state.lastpk`.
    pub fn parse(text: &str) -> Result<Self, LastPkError> {
        Self::from_query_result(&parse_query_result(text)?)
    }

    /// Reads the bookmark from a decoded QueryResult (fields = PK columns, first row = values).
    pub fn from_query_result(result: &QueryResult) -> Result<Self, LastPkError> {
        if result.fields.is_empty() {
            return Err(LastPkError::NoFields);
        }
        let row = result.rows.first().ok_or(LastPkError::NoRow)?;
        let values = super::result::row_values(row).ok_or(LastPkError::Arity {
            got: row.lengths.len(),
            want: result.fields.len(),
        })?;
        if values.len() != result.fields.len() {
            return Err(LastPkError::Arity {
                got: values.len(),
                want: result.fields.len(),
            });
        }
        Ok(LastPk {
            columns: result
                .fields
                .iter()
                .zip(values)
                .map(|(f, v)| PkValue {
                    name: f.name.clone(),
                    r#type: f.r#type,
                    value: v.map(<[u8]>::to_vec),
                })
                .collect(),
        })
    }
}

impl fmt::Display for LastPk {
    /// `id=42`, or `a=1,b='x'` for composite keys; text types are quoted, NULL is `NULL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, col) in self.columns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            // The ISQUOTED flag bit marks text, binary and temporal types.
            let quoted = col.r#type & 2048 != 0;
            match &col.value {
                None => write!(f, "{}=NULL", col.name)?,
                Some(v) => {
                    let text = String::from_utf8_lossy(v);
                    if quoted {
                        write!(f, "{}='{}'", col.name, text.escape_default())?;
                    } else {
                        write!(f, "{}={}", col.name, text.escape_default())?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A table's bookmark as read from `_vt.copy_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookmarkPosition {
    /// `lastpk` is NULL: the table's copy has not started.
    NotStarted,
    /// The last copied key.
    At(LastPk),
    /// The stored text could not be read; kept raw so one odd row does not hide the others.
    Unreadable {
        /// The stored text.
        raw: String,
        /// Why it could not be parsed.
        error: LastPkError,
    },
}

/// The latest `_vt.copy_state` bookmark of one table of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyBookmark {
    /// The stream (`vrepl_id`).
    pub stream_id: i32,
    /// Target table being copied.
    pub table: String,
    /// `copy_state.id` of the row; a higher id is a newer bookmark.
    pub row_id: u64,
    /// The raw `lastpk` text (`None` = NULL), kept to compare bookmarks across observations.
    pub raw: Option<String>,
    /// The parsed bookmark.
    pub position: BookmarkPosition,
}

/// A `_vt.copy_state` result that does not have the expected columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected _vt.copy_state result: {0}")]
pub struct CopyStateError(#[from] pub ResultError);

/// A sidecar database name that is not a plain identifier (refused to keep SQL injection out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sidecar database name {0:?}")]
pub struct InvalidSidecarName(pub String);

/// The `VReplicationExec` SELECT that reads copy bookmarks for `stream_ids`.
///
/// All rows are read and reduced by [`parse_copy_state`] rather than selecting `max(id)` in SQL:
/// the tablet only accepts simple SELECTs on its sidecar tables, and the table stays small (older
/// bookmarks are garbage-collected).
pub fn copy_state_query(
    sidecar_db: &str,
    stream_ids: &[i32],
) -> Result<String, InvalidSidecarName> {
    let db = if sidecar_db.is_empty() {
        "_vt"
    } else {
        sidecar_db
    };
    if db.len() > 64 || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(InvalidSidecarName(sidecar_db.to_owned()));
    }
    let ids: Vec<String> = stream_ids.iter().map(i32::to_string).collect();
    let filter = if ids.is_empty() {
        // No streams: a query that is valid and returns nothing.
        "1 = 0".to_owned()
    } else {
        format!("vrepl_id in ({})", ids.join(", "))
    };
    Ok(format!(
        "select id, vrepl_id, table_name, lastpk from {db}.copy_state where {filter}"
    ))
}

/// Reads a `_vt.copy_state` result and keeps the newest bookmark (highest `id`) per stream and
/// table. A bookmark whose `lastpk` cannot be parsed is kept as [`BookmarkPosition::Unreadable`].
pub fn parse_copy_state(result: &QueryResult) -> Result<Vec<CopyBookmark>, CopyStateError> {
    let table = Table::new(result)?;
    let (c_id, c_vrepl, c_table, c_lastpk) = (
        table.column("id")?,
        table.column("vrepl_id")?,
        table.column("table_name")?,
        table.column("lastpk")?,
    );
    let mut newest: BTreeMap<(i32, String), CopyBookmark> = BTreeMap::new();
    for row in 0..table.len() {
        let row_id = table.int(row, c_id)?;
        let stream_id = table.int(row, c_vrepl)?;
        let bad = |column: &str, reason: &str| ResultError::BadValue {
            row,
            column: column.to_owned(),
            reason: reason.to_owned(),
        };
        let row_id = u64::try_from(row_id).map_err(|_| bad("id", "negative id"))?;
        let stream_id = i32::try_from(stream_id)
            .map_err(|_| bad("vrepl_id", "out of range for a stream id"))?;
        let name = table.text(row, c_table)?.unwrap_or_default().to_owned();
        let raw = table.text(row, c_lastpk)?.map(str::to_owned);
        let position = match &raw {
            None => BookmarkPosition::NotStarted,
            Some(text) => match LastPk::parse(text) {
                Ok(pk) => BookmarkPosition::At(pk),
                Err(error) => BookmarkPosition::Unreadable {
                    raw: text.clone(),
                    error,
                },
            },
        };
        let bookmark = CopyBookmark {
            stream_id,
            table: name.clone(),
            row_id,
            raw,
            position,
        };
        match newest.get(&(stream_id, name.clone())) {
            Some(existing) if existing.row_id >= row_id => {}
            _ => {
                newest.insert((stream_id, name), bookmark);
            }
        }
    }
    Ok(newest.into_values().collect())
}

/// One observation of a copying stream, fed to [`CopyProgress::observe`].
#[derive(Debug, Clone, PartialEq)]
pub struct CopyObservation<'a> {
    /// When the observation was made.
    pub at: SystemTime,
    /// Whether the stream was in its copy phase.
    pub copying: bool,
    /// The stream message.
    pub message: &'a str,
    /// `time_updated` of the row: distinguishes two cycles that ended with the same message.
    pub time_updated: Option<SystemTime>,
    /// `rows_copied`.
    pub rows_copied: i64,
    /// Latest bookmark per table: `(table, raw lastpk)`.
    pub bookmarks: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> CopyObservation<'a> {
    /// The observation a [`StreamStatus`] gives at `at`.
    pub fn of_stream(stream: &'a StreamStatus, at: SystemTime) -> Self {
        CopyObservation {
            at,
            copying: stream.is_copying(),
            message: &stream.message,
            time_updated: stream.time_updated,
            rows_copied: stream.rows_copied,
            bookmarks: stream
                .copy_state
                .iter()
                .flatten()
                .map(|b| (b.table.as_str(), b.raw.as_deref()))
                .collect(),
        }
    }
}

/// What one observation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStep {
    /// A copy cycle ended (an ephemeral error not counted before).
    pub cycle_ended: bool,
    /// Rows or bookmarks advanced since the previous observation.
    pub progressed: bool,
}

/// Copy progress accumulated over successive observations of one stream.
///
/// It is plain data (serde) so the controller can keep it in the resource status between passes
/// rather than in memory: copy cycles and "last progress" survive an operator restart. The cycle
/// count is a lower bound: two cycles ending between two observations count once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyProgress {
    /// Copy cycles seen ending with an ephemeral MySQL error.
    pub cycles: u32,
    /// Identity of the last counted cycle end (message and `time_updated`), to avoid recounting it.
    pub last_cycle_marker: Option<String>,
    /// Highest `rows_copied` seen.
    pub rows_copied: i64,
    /// Latest raw bookmark per table.
    pub bookmarks: BTreeMap<String, String>,
    /// When rows or bookmarks last advanced (seconds since the Unix epoch).
    pub last_progress_at: Option<u64>,
}

impl CopyProgress {
    /// Folds one observation in and reports what changed.
    pub fn observe(&mut self, obs: &CopyObservation<'_>) -> CopyStep {
        let mut step = CopyStep::default();
        if let MessageClass::CopyCycleEnded { code } = classify_message(obs.message, obs.copying) {
            let updated = obs
                .time_updated
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let marker = format!("{code}@{updated}:{}", obs.message.trim());
            if self.last_cycle_marker.as_deref() != Some(marker.as_str()) {
                self.cycles = self.cycles.saturating_add(1);
                self.last_cycle_marker = Some(marker);
                step.cycle_ended = true;
            }
        }
        if obs.rows_copied > self.rows_copied {
            self.rows_copied = obs.rows_copied;
            step.progressed = true;
        }
        for &(table, raw) in &obs.bookmarks {
            let Some(raw) = raw else { continue };
            if self.bookmarks.get(table).map(String::as_str) != Some(raw) {
                self.bookmarks.insert(table.to_owned(), raw.to_owned());
                step.progressed = true;
            }
        }
        if step.progressed || self.last_progress_at.is_none() {
            self.last_progress_at = obs.at.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
        }
        step
    }

    /// How long since rows or bookmarks last advanced (zero if the clock went backwards), so a
    /// stream "stuck retrying" can be told apart from one making progress (#18781, #12051).
    pub fn stalled_for(&self, now: SystemTime) -> Option<Duration> {
        // The value may come back from a user-editable status: no overflow panics.
        let since = UNIX_EPOCH.checked_add(Duration::from_secs(self.last_progress_at?))?;
        Some(now.duration_since(since).unwrap_or(Duration::ZERO))
    }
}

/// Counts copy cycles over a sequence of observations (a pure fold of [`CopyProgress`]).
pub fn count_copy_cycles<'a>(observations: impl IntoIterator<Item = CopyObservation<'a>>) -> u32 {
    let mut progress = CopyProgress::default();
    for obs in observations {
        progress.observe(&obs);
    }
    progress.cycles
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;

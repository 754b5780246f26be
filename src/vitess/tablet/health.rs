//! Tablet health from the `FullStatus` RPC, with "not reported" kept apart from "false".
//!
//! `FullStatus` grew fields over releases (`tablet_type`, `disk_stalled` and `semi_sync_blocked`
//! arrived in v22), and none of them has explicit presence: an older tablet simply leaves them at
//! the proto3 zero value. Reading that zero as a fact is exactly the #18031 bug, where VTOrc saw
//! `tablet_type = UNKNOWN` from older vttablets, concluded "this primary is not serving as
//! PRIMARY", and started false recoveries. vtmove runs against v21–v24 tablets, so:
//!
//! - `tablet_type` UNKNOWN is [`ReportedType::NotReported`], and
//!   [`TabletHealth::primary_type_mismatch`] fires only for a *set*, non-PRIMARY type;
//! - `disk_stalled` / `semi_sync_blocked` are `Option<bool>`: `Some(true)` when set, `Some(false)`
//!   only when the tablet demonstrably speaks v22+ (it reported any v22 field), else `None`.

use std::time::Duration;

use super::gtid::{GtidParseError, Position};
use crate::vitess::proto::replicationdata::{FullStatus, Status};
use crate::vitess::proto::topodata::TabletType;

/// The type a tablet says it serves as (FullStatus `tablet_type`, v22+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedType {
    /// Zero value: an older tablet that does not report its type. Never a mismatch (#18031).
    NotReported,
    /// A known type.
    Type(TabletType),
    /// A number this build does not know (a newer Vitess); it is set and is not PRIMARY.
    Unrecognized(i32),
}

impl ReportedType {
    /// Interprets the raw enum number.
    pub fn from_raw(raw: i32) -> Self {
        match TabletType::try_from(raw) {
            Ok(TabletType::Unknown) => ReportedType::NotReported,
            Ok(t) => ReportedType::Type(t),
            Err(_) => ReportedType::Unrecognized(raw),
        }
    }

    /// The type, when reported and known.
    pub fn known(&self) -> Option<TabletType> {
        match self {
            ReportedType::Type(t) => Some(*t),
            _ => None,
        }
    }
}

/// Replication lag of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationLag {
    /// The tablet could not measure it (`replication_lag_unknown`).
    Unknown,
    /// Seconds behind its primary.
    Behind(Duration),
}

/// Replication view of a tablet that replicates from a primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationHealth {
    /// Executed position of the replica.
    pub position: String,
    /// Lag behind the primary.
    pub lag: ReplicationLag,
    /// Primary it replicates from.
    pub source_host: String,
    /// Port of that primary.
    pub source_port: i32,
    /// Last IO thread error, if any.
    pub last_io_error: Option<String>,
    /// Last SQL thread error, if any.
    pub last_sql_error: Option<String>,
    /// A backup is running (v22+; `None` when not reported).
    pub backup_running: Option<bool>,
}

/// Something about a tablet that should block or warn before vtmove relies on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProblem {
    /// The tablet reports a set type other than PRIMARY while the topology says PRIMARY.
    PrimaryTypeMismatch(ReportedType),
    /// MySQL's disk is stalled.
    DiskStalled,
    /// Semi-sync acknowledgements are blocking commits.
    SemiSyncBlocked,
    /// Replication reported an IO or SQL thread error.
    ReplicationError(String),
    /// A backup is running (refreshes and cutovers can fail meanwhile, #15630).
    BackupRunning,
}

/// What vtmove knows about a tablet from one `FullStatus` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabletHealth {
    /// MySQL server UUID.
    pub server_uuid: String,
    /// MySQL version string.
    pub mysql_version: String,
    /// The type the tablet serves as, or not reported.
    pub reported_type: ReportedType,
    /// MySQL `read_only`.
    pub read_only: bool,
    /// MySQL `super_read_only`.
    pub super_read_only: bool,
    /// Disk stalled (v22+): `None` = not reported.
    pub disk_stalled: Option<bool>,
    /// Semi-sync blocked (v22+): `None` = not reported.
    pub semi_sync_blocked: Option<bool>,
    /// True when the tablet demonstrably reports v22 fields, so their zero values are facts.
    pub reports_v22_fields: bool,
    /// The position of this tablet as a primary (`primary_status.position`), if it reported one.
    pub primary_position: Option<String>,
    /// Replication state, if the tablet replicates.
    pub replication: Option<ReplicationHealth>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_owned())
}

impl TabletHealth {
    /// Interprets a `FullStatus`, treating zero values of post-v21 fields as "not reported".
    pub fn from_full_status(status: &FullStatus) -> Self {
        let reported_type = ReportedType::from_raw(status.tablet_type);
        let backup_running = status
            .replication_status
            .as_ref()
            .is_some_and(|r| r.backup_running);
        // Any non-zero v22 field proves the tablet fills them all, so their zeros become facts.
        let reports_v22_fields = reported_type != ReportedType::NotReported
            || status.disk_stalled
            || status.semi_sync_blocked
            || backup_running;
        let v22 = |value: bool| (value || reports_v22_fields).then_some(value);
        TabletHealth {
            server_uuid: status.server_uuid.clone(),
            mysql_version: status.version.clone(),
            reported_type,
            read_only: status.read_only,
            super_read_only: status.super_read_only,
            disk_stalled: v22(status.disk_stalled),
            semi_sync_blocked: v22(status.semi_sync_blocked),
            reports_v22_fields,
            primary_position: status
                .primary_status
                .as_ref()
                .and_then(|p| non_empty(&p.position)),
            replication: status
                .replication_status
                .as_ref()
                .map(|r| replication_health(r, v22(r.backup_running))),
        }
    }

    /// True only when the tablet reports a **set** type that is not PRIMARY. Call it for a tablet
    /// the topology records as PRIMARY: a positive answer means it is not serving as one yet. A
    /// type that is not reported (UNKNOWN, an older tablet) never counts (#18031).
    pub fn primary_type_mismatch(&self) -> bool {
        match self.reported_type {
            ReportedType::NotReported => false,
            ReportedType::Type(t) => t != TabletType::Primary,
            ReportedType::Unrecognized(_) => true,
        }
    }

    /// Replication lag as a duration; `None` for a tablet that does not replicate or cannot tell.
    pub fn replication_lag(&self) -> Option<Duration> {
        match self.replication.as_ref()?.lag {
            ReplicationLag::Behind(d) => Some(d),
            ReplicationLag::Unknown => None,
        }
    }

    /// The primary position parsed as a GTID position, if the tablet reported one.
    pub fn parsed_primary_position(&self) -> Option<Result<Position, GtidParseError>> {
        self.primary_position.as_deref().map(Position::parse)
    }

    /// Problems worth surfacing. `expect_primary` says whether the topology records this tablet
    /// as the shard primary (only then is a non-PRIMARY reported type a problem).
    pub fn problems(&self, expect_primary: bool) -> Vec<HealthProblem> {
        let mut problems = Vec::new();
        if expect_primary && self.primary_type_mismatch() {
            problems.push(HealthProblem::PrimaryTypeMismatch(self.reported_type));
        }
        if self.disk_stalled == Some(true) {
            problems.push(HealthProblem::DiskStalled);
        }
        if self.semi_sync_blocked == Some(true) {
            problems.push(HealthProblem::SemiSyncBlocked);
        }
        if let Some(r) = &self.replication {
            for e in [&r.last_io_error, &r.last_sql_error].into_iter().flatten() {
                problems.push(HealthProblem::ReplicationError(e.clone()));
            }
            if r.backup_running == Some(true) {
                problems.push(HealthProblem::BackupRunning);
            }
        }
        problems
    }
}

fn replication_health(r: &Status, backup_running: Option<bool>) -> ReplicationHealth {
    ReplicationHealth {
        position: r.position.clone(),
        lag: if r.replication_lag_unknown {
            ReplicationLag::Unknown
        } else {
            ReplicationLag::Behind(Duration::from_secs(u64::from(r.replication_lag_seconds)))
        },
        source_host: r.source_host.clone(),
        source_port: r.source_port,
        last_io_error: non_empty(&r.last_io_error),
        last_sql_error: non_empty(&r.last_sql_error),
        backup_running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vitess::proto::replicationdata::PrimaryStatus;

    fn primary(tablet_type: TabletType) -> FullStatus {
        FullStatus {
            server_uuid: "3e11fa47-71ca-11e1-9e33-c80aa9429562".into(),
            primary_status: Some(PrimaryStatus {
                position: "MySQL56/3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42".into(),
                ..PrimaryStatus::default()
            }),
            tablet_type: tablet_type as i32,
            ..FullStatus::default()
        }
    }

    #[test]
    fn unknown_type_from_an_old_tablet_is_not_a_mismatch() {
        // #18031: a v21 tablet leaves tablet_type at zero.
        let h = TabletHealth::from_full_status(&primary(TabletType::Unknown));
        assert_eq!(h.reported_type, ReportedType::NotReported);
        assert!(!h.primary_type_mismatch());
        assert!(h.problems(true).is_empty());
        // Its v22 booleans are unknown, not false.
        assert!(!h.reports_v22_fields);
        assert_eq!(h.disk_stalled, None);
        assert_eq!(h.semi_sync_blocked, None);
    }

    #[test]
    fn replica_type_on_a_primary_is_a_mismatch() {
        let h = TabletHealth::from_full_status(&primary(TabletType::Replica));
        assert_eq!(h.reported_type, ReportedType::Type(TabletType::Replica));
        assert!(h.primary_type_mismatch());
        assert_eq!(
            h.problems(true),
            vec![HealthProblem::PrimaryTypeMismatch(ReportedType::Type(
                TabletType::Replica
            ))]
        );
        // Not a problem for a tablet the topology does not call primary.
        assert!(h.problems(false).is_empty());
    }

    #[test]
    fn primary_type_is_fine_and_v22_zeros_are_facts() {
        let h = TabletHealth::from_full_status(&primary(TabletType::Primary));
        assert!(!h.primary_type_mismatch());
        assert!(h.reports_v22_fields);
        assert_eq!(h.disk_stalled, Some(false));
        assert_eq!(h.semi_sync_blocked, Some(false));
        assert!(h.problems(true).is_empty());
        let pos = h.parsed_primary_position();
        assert!(matches!(pos, Some(Ok(p)) if p.gtids.transaction_count() == 42));
    }

    #[test]
    fn unrecognized_type_is_set_and_not_primary() {
        let mut s = primary(TabletType::Primary);
        s.tablet_type = 77;
        let h = TabletHealth::from_full_status(&s);
        assert_eq!(h.reported_type, ReportedType::Unrecognized(77));
        assert!(h.primary_type_mismatch());
    }

    #[test]
    fn set_v22_flags_are_reported_even_without_a_type() {
        let mut s = primary(TabletType::Unknown);
        s.disk_stalled = true;
        let h = TabletHealth::from_full_status(&s);
        assert_eq!(h.disk_stalled, Some(true));
        // disk_stalled proves v22, so semi_sync_blocked=false is a fact now.
        assert_eq!(h.semi_sync_blocked, Some(false));
        assert!(!h.primary_type_mismatch());
        assert_eq!(h.problems(true), vec![HealthProblem::DiskStalled]);
    }

    #[test]
    fn replica_lag_and_read_only() {
        let s = FullStatus {
            read_only: true,
            super_read_only: true,
            tablet_type: TabletType::Replica as i32,
            replication_status: Some(Status {
                position: "MySQL56/3e11fa47-71ca-11e1-9e33-c80aa9429562:1-40".into(),
                replication_lag_seconds: 7,
                source_host: "primary-0".into(),
                source_port: 3306,
                last_sql_error: "Error 1062: duplicate".into(),
                ..Status::default()
            }),
            ..FullStatus::default()
        };
        let h = TabletHealth::from_full_status(&s);
        assert!(h.read_only && h.super_read_only);
        assert_eq!(h.replication_lag(), Some(Duration::from_secs(7)));
        assert_eq!(h.primary_position, None);
        assert_eq!(
            h.problems(false),
            vec![HealthProblem::ReplicationError(
                "Error 1062: duplicate".into()
            )]
        );
        let r = h.replication.as_ref().map(|r| r.backup_running);
        assert_eq!(r, Some(Some(false)));

        let mut unknown = s.clone();
        if let Some(r) = unknown.replication_status.as_mut() {
            r.replication_lag_unknown = true;
        }
        unknown.tablet_type = 0;
        let h = TabletHealth::from_full_status(&unknown);
        assert_eq!(h.replication_lag(), None);
        assert_eq!(h.replication.map(|r| r.backup_running), Some(None));
    }

    #[test]
    fn primary_has_no_replication_lag() {
        let h = TabletHealth::from_full_status(&primary(TabletType::Primary));
        assert_eq!(h.replication_lag(), None);
        assert!(h.replication.is_none());
    }
}

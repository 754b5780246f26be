//! Denied tables (`Shard.tablet_controls[PRIMARY].denied_tables`) per workflow state
//! (`docs/design/movetables.md`, "Denied tables"), and the single-writer invariant I1 built on them.
//!
//! A vttablet rejects writes to a table its shard record denies on PRIMARY. MoveTables keeps
//! exactly one side writable: the side that primary routing points to accepts writes, the other
//! denies them. Breaking that is either an outage (routing points to a side that denies: #17326)
//! or a risk of writes landing on both sides (neither side denies).

use super::names::{KeyspaceName, TableName};
use super::placement::{MovedTables, Side, TrafficPlacement};
use crate::vitess::proto::topodata;

/// Where a workflow is in its life, as far as denied tables are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Created and not yet completed or cancelled; traffic as the placement says.
    Active,
    /// Inside the write cutover, after the side that had writes stopped accepting them and before
    /// primary routing moves (Vitess's `stopSourceWrites` done, routing not yet changed). Only
    /// valid while both keyspace locks are held.
    CuttingOverWrites,
    /// After Complete.
    Completed {
        /// `--keep-data`: the source tables stay and so does their denial.
        keep_data: bool,
    },
    /// After Cancel (workflow delete).
    Cancelled {
        /// `--keep-data`: the target's denial is not removed (the source is left as it was).
        keep_data: bool,
    },
}

/// What one keyspace's PRIMARY tablet controls should say about a moved table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Every shard lists the table in its PRIMARY denied tables.
    Denied,
    /// No shard lists it.
    Allowed,
    /// The step leaves whatever is there (Cancel with keep-data does not touch the source).
    Untouched,
}

/// The expected denial on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeniedTablesExpectation {
    /// On the source keyspace's shards.
    pub source: Denial,
    /// On the target keyspace's shards.
    pub target: Denial,
}

impl DeniedTablesExpectation {
    /// The expectation for one side.
    pub fn on(&self, side: Side) -> Denial {
        match side {
            Side::Source => self.source,
            Side::Target => self.target,
        }
    }

    /// Whether observed coverage meets the expectation (`Untouched` accepts anything).
    pub fn is_met_by(&self, source: DenialCoverage, target: DenialCoverage) -> bool {
        let meets = |expected: Denial, observed: DenialCoverage| match expected {
            Denial::Denied => observed == DenialCoverage::Everywhere,
            Denial::Allowed => observed == DenialCoverage::Nowhere,
            Denial::Untouched => true,
        };
        meets(self.source, source) && meets(self.target, target)
    }
}

/// Which keyspace must deny a moved table, for a placement and lifecycle (`docs/design/movetables.md`, "Denied tables"). Only the
/// PRIMARY placement matters: reads are never denied.
pub fn expected_denied_tables(
    placement: TrafficPlacement,
    lifecycle: Lifecycle,
) -> DeniedTablesExpectation {
    let (source, target) = match lifecycle {
        // The side that accepts writes allows them; the other denies (states A–D, since PR #15977
        // created the target denial at Create).
        Lifecycle::Active => match placement.primary {
            Side::Source => (Denial::Allowed, Denial::Denied),
            Side::Target => (Denial::Denied, Denial::Allowed),
        },
        // The side that had writes denies them already; the side about to get them allows them.
        Lifecycle::CuttingOverWrites => match placement.primary {
            Side::Source => (Denial::Denied, Denial::Allowed),
            Side::Target => (Denial::Allowed, Denial::Denied),
        },
        Lifecycle::Completed { keep_data: false } => (Denial::Allowed, Denial::Allowed),
        Lifecycle::Completed { keep_data: true } => (Denial::Denied, Denial::Allowed),
        Lifecycle::Cancelled { keep_data: false } => (Denial::Allowed, Denial::Allowed),
        Lifecycle::Cancelled { keep_data: true } => (Denial::Untouched, Denial::Denied),
    };
    DeniedTablesExpectation { source, target }
}

/// The tables a shard denies on PRIMARY (from every PRIMARY tablet control; cells are not
/// considered, since Vitess writes PRIMARY denials without a cell list).
pub fn primary_denied_tables(shard: &topodata::Shard) -> impl Iterator<Item = &str> {
    shard
        .tablet_controls
        .iter()
        .filter(|control| control.tablet_type == topodata::TabletType::Primary as i32)
        .flat_map(|control| control.denied_tables.iter().map(String::as_str))
}

/// Whether a shard denies writes to `table`.
pub fn shard_denies(shard: &topodata::Shard, table: &TableName) -> bool {
    primary_denied_tables(shard).any(|denied| denied == table.as_str())
}

/// How many of a keyspace's shards deny a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialCoverage {
    /// Every shard denies it (also the answer for a keyspace without shards: nothing there can
    /// take writes).
    Everywhere,
    /// No shard denies it.
    Nowhere,
    /// Some shards deny it and some do not: a half-applied change.
    SomeShards,
}

impl DenialCoverage {
    /// The coverage over a keyspace's shard records.
    pub fn of_shards<'a>(
        shards: impl IntoIterator<Item = &'a topodata::Shard>,
        table: &TableName,
    ) -> Self {
        let (mut denying, mut allowing) = (0usize, 0usize);
        for shard in shards {
            if shard_denies(shard, table) {
                denying += 1;
            } else {
                allowing += 1;
            }
        }
        match (denying, allowing) {
            (_, 0) => DenialCoverage::Everywhere,
            (0, _) => DenialCoverage::Nowhere,
            _ => DenialCoverage::SomeShards,
        }
    }
}

/// A break of I1 for one table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SingleWriterViolation {
    /// Writes are routed to a keyspace that (at least partly) denies them: writes fail. This is
    /// the #17326 outage.
    #[error(
        "writes to {table} are routed to {routed_to}, which denies them ({routed_coverage:?}); \
         the other side denies them {other_coverage:?}: writes fail"
    )]
    RoutedToDenyingKeyspace {
        /// The table.
        table: TableName,
        /// Where primary routing points.
        routed_to: KeyspaceName,
        /// How much of it denies the table.
        routed_coverage: DenialCoverage,
        /// How much of the other side denies the table.
        other_coverage: DenialCoverage,
    },
    /// The side primary routing does not point to still accepts writes on some shards: a write
    /// sent there directly (shard targeting, a stale vtgate) would split the data.
    #[error(
        "writes to {table} are routed to {routed_to}, but {other} does not deny them \
         ({other_coverage:?}): dual-write risk"
    )]
    OtherSideAcceptsWrites {
        /// The table.
        table: TableName,
        /// Where primary routing points.
        routed_to: KeyspaceName,
        /// The side that should deny.
        other: KeyspaceName,
        /// How much of it denies the table.
        other_coverage: DenialCoverage,
    },
    /// Primary routing points to a keyspace that is neither source nor target.
    #[error("writes to {table} are routed to {routed_to}, which is not part of the workflow")]
    RoutedOutsideWorkflow {
        /// The table.
        table: TableName,
        /// Where primary routing points.
        routed_to: KeyspaceName,
    },
}

/// Checks I1 for one table of an active workflow, outside the cutover window: the keyspace that
/// primary routing resolves to denies the table on no shard, and the other keyspace denies it on
/// every shard. An outage is reported before a dual-write risk.
///
/// `writes_go_to` comes from the resolver ([`super::resolve::RoutingView::write_keyspace`]);
/// the coverages from [`DenialCoverage::of_shards`] over each keyspace's shard records.
pub fn check_single_writer(
    moved: &MovedTables,
    table: &TableName,
    writes_go_to: &KeyspaceName,
    source_coverage: DenialCoverage,
    target_coverage: DenialCoverage,
) -> Result<(), SingleWriterViolation> {
    let Some(routed_side) = moved.side_of(writes_go_to) else {
        return Err(SingleWriterViolation::RoutedOutsideWorkflow {
            table: table.clone(),
            routed_to: writes_go_to.clone(),
        });
    };
    let coverage = |side| match side {
        Side::Source => source_coverage,
        Side::Target => target_coverage,
    };
    let routed_coverage = coverage(routed_side);
    let other_coverage = coverage(routed_side.other());
    if routed_coverage != DenialCoverage::Nowhere {
        return Err(SingleWriterViolation::RoutedToDenyingKeyspace {
            table: table.clone(),
            routed_to: writes_go_to.clone(),
            routed_coverage,
            other_coverage,
        });
    }
    if other_coverage != DenialCoverage::Everywhere {
        return Err(SingleWriterViolation::OtherSideAcceptsWrites {
            table: table.clone(),
            routed_to: writes_go_to.clone(),
            other: moved.keyspace(routed_side.other()).clone(),
            other_coverage,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(controls: Vec<(topodata::TabletType, &[&str])>) -> topodata::Shard {
        topodata::Shard {
            tablet_controls: controls
                .into_iter()
                .map(|(tablet_type, tables)| topodata::shard::TabletControl {
                    tablet_type: tablet_type as i32,
                    denied_tables: tables.iter().map(|t| (*t).to_owned()).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_primary_controls_deny_writes() {
        let t = TableName::from("T");
        assert!(shard_denies(
            &shard(vec![(topodata::TabletType::Primary, &["a", "T"])]),
            &t
        ));
        assert!(!shard_denies(
            &shard(vec![(topodata::TabletType::Replica, &["T"])]),
            &t
        ));
        assert!(!shard_denies(&shard(vec![]), &t));
    }

    #[test]
    fn coverage_over_shards() {
        let t = TableName::from("T");
        let denying = shard(vec![(topodata::TabletType::Primary, &["T"])]);
        let allowing = shard(vec![]);
        assert_eq!(
            DenialCoverage::of_shards([&denying, &denying], &t),
            DenialCoverage::Everywhere
        );
        assert_eq!(
            DenialCoverage::of_shards([&allowing], &t),
            DenialCoverage::Nowhere
        );
        assert_eq!(
            DenialCoverage::of_shards([&denying, &allowing], &t),
            DenialCoverage::SomeShards
        );
        assert_eq!(
            DenialCoverage::of_shards([], &t),
            DenialCoverage::Everywhere
        );
    }

    #[test]
    fn a_third_keyspace_is_a_violation() {
        let moved = MovedTables::new("S", "K", ["T"]);
        let result = check_single_writer(
            &moved,
            &"T".into(),
            &"X".into(),
            DenialCoverage::Nowhere,
            DenialCoverage::Everywhere,
        );
        assert!(matches!(
            result,
            Err(SingleWriterViolation::RoutedOutsideWorkflow { .. })
        ));
    }

    #[test]
    fn untouched_accepts_anything() {
        let e = expected_denied_tables(
            TrafficPlacement::all(Side::Source),
            Lifecycle::Cancelled { keep_data: true },
        );
        for coverage in [
            DenialCoverage::Everywhere,
            DenialCoverage::Nowhere,
            DenialCoverage::SomeShards,
        ] {
            assert!(e.is_met_by(coverage, DenialCoverage::Everywhere));
            assert!(!e.is_met_by(coverage, DenialCoverage::Nowhere));
        }
    }
}

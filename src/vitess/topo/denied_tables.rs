//! Denied tables: the per-tablet-type `Shard.tablet_controls[].denied_tables` lists that make
//! vttablet refuse queries on tables that moved away (or have not arrived yet).
//!
//! These pure functions edit a `Shard` in place; [`TopoServer::update_denied_tables`] runs them
//! as a versioned read-modify-write under the keyspace lock (invariant I3). Lists are kept sorted
//! and free of duplicates, an entry is created when the first table is denied for a tablet type
//! and removed when its last table is allowed again, and nothing changes (so nothing is written)
//! when the tables are already in the requested state.
//!
//! [`TopoServer::update_denied_tables`]: super::TopoServer::update_denied_tables

use std::collections::BTreeSet;

use crate::vitess::proto::topodata::shard::TabletControl;
use crate::vitess::proto::topodata::{Shard, TabletType};

use super::error::{Result, TopoError};

/// Whether tables are added to or removed from a denied list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeniedTablesOp {
    /// Deny the tables (vttablet rejects queries on them).
    Add,
    /// Allow the tables again.
    Remove,
}

/// The denied tables of `tablet_type` in `shard` (empty if it has no entry).
pub fn denied_tables(shard: &Shard, tablet_type: TabletType) -> Vec<String> {
    shard
        .tablet_controls
        .iter()
        .filter(|tc| tc.tablet_type == tablet_type as i32)
        .flat_map(|tc| tc.denied_tables.iter().cloned())
        .collect()
}

/// Adds `tables` to, or removes them from, the denied tables of `tablet_type`. `cells` restricts a
/// newly created entry to those cells (empty: all cells); when adding to an existing entry the
/// cell lists are merged, an empty list meaning all cells. Returns whether `shard` changed.
pub fn apply_denied_tables(
    shard: &mut Shard,
    tablet_type: TabletType,
    cells: &[String],
    tables: &[String],
    op: DeniedTablesOp,
) -> Result<bool> {
    if let Some(bad) = tables
        .iter()
        .find(|t| t.trim().is_empty() || t.trim() != t.as_str())
    {
        return Err(TopoError::InvalidArgument(format!(
            "invalid table name {bad:?} in denied tables"
        )));
    }
    let requested: BTreeSet<&str> = tables.iter().map(String::as_str).collect();
    let position = shard
        .tablet_controls
        .iter()
        .position(|tc| tc.tablet_type == tablet_type as i32);

    match (op, position) {
        (DeniedTablesOp::Add, None) => {
            if requested.is_empty() {
                return Ok(false);
            }
            let mut cells: Vec<String> = cells.to_vec();
            cells.sort();
            cells.dedup();
            shard.tablet_controls.push(TabletControl {
                tablet_type: tablet_type as i32,
                cells,
                denied_tables: requested.iter().map(|t| (*t).to_string()).collect(),
                ..Default::default()
            });
            Ok(true)
        }
        (DeniedTablesOp::Add, Some(i)) => {
            let tc = &mut shard.tablet_controls[i];
            let existing: BTreeSet<&str> = tc.denied_tables.iter().map(String::as_str).collect();
            let merged: BTreeSet<&str> = existing.union(&requested).copied().collect();
            let new_cells = merge_cells(&tc.cells, cells);
            if merged == existing && new_cells == tc.cells {
                return Ok(false);
            }
            tc.denied_tables = merged.iter().map(|t| (*t).to_string()).collect();
            tc.cells = new_cells;
            Ok(true)
        }
        (DeniedTablesOp::Remove, None) => Ok(false),
        (DeniedTablesOp::Remove, Some(i)) => {
            let tc = &mut shard.tablet_controls[i];
            if !tc
                .denied_tables
                .iter()
                .any(|t| requested.contains(t.as_str()))
            {
                return Ok(false);
            }
            let remaining: BTreeSet<String> = tc
                .denied_tables
                .iter()
                .filter(|t| !requested.contains(t.as_str()))
                .cloned()
                .collect();
            if remaining.is_empty() {
                shard.tablet_controls.remove(i);
            } else {
                tc.denied_tables = remaining.into_iter().collect();
            }
            Ok(true)
        }
    }
}

/// Merges cell lists where an empty list means "all cells": the result is empty when either is,
/// and otherwise the sorted union. An existing list that is already a superset is kept as is.
/// Whether `a` and `b` are the same Shard record as far as a workflow moving `tables` is
/// concerned: the primary, its term, the key range and serving flag, and every tablet control
/// restricted to those tables (tablet type, cells, frozen, reads allowed, which of them are
/// denied). Another
/// workflow denying or allowing *its* tables on the same shard changes the record's version but
/// not this: at scale, many workflows between the same keyspaces rewrite the same Shard records,
/// and a check on the whole record would fail each one's step whenever any other took one.
pub fn same_for_tables(a: &Shard, b: &Shard, tables: &[String]) -> bool {
    type Control<'s> = (i32, Vec<&'s str>, bool, bool, Vec<&'s str>);
    fn controls<'s>(shard: &'s Shard, tables: &[String]) -> BTreeSet<Control<'s>> {
        shard
            .tablet_controls
            .iter()
            .map(|tc| {
                let mut cells: Vec<&str> = tc.cells.iter().map(String::as_str).collect();
                cells.sort_unstable();
                let mut denied: Vec<&str> = tc
                    .denied_tables
                    .iter()
                    .filter(|t| tables.contains(t))
                    .map(String::as_str)
                    .collect();
                denied.sort_unstable();
                (tc.tablet_type, cells, tc.frozen, tc.allow_reads, denied)
            })
            .filter(|(_, _, frozen, _, denied)| *frozen || !denied.is_empty())
            .collect()
    }
    a.primary_alias == b.primary_alias
        && a.primary_term_start_time == b.primary_term_start_time
        && a.key_range == b.key_range
        && a.is_primary_serving == b.is_primary_serving
        && controls(a, tables) == controls(b, tables)
}

fn merge_cells(existing: &[String], added: &[String]) -> Vec<String> {
    if existing.is_empty() || added.is_empty() {
        return Vec::new();
    }
    if added.iter().all(|c| existing.contains(c)) {
        return existing.to_vec();
    }
    let merged: BTreeSet<&String> = existing.iter().chain(added).collect();
    merged.into_iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn another_workflows_tables_do_not_change_a_shard_for_this_one() {
        let mine = tables(&["t1"]);
        let mut before = Shard::default();
        apply_denied_tables(
            &mut before,
            TabletType::Primary,
            &[],
            &tables(&["t9"]),
            DeniedTablesOp::Add,
        )
        .unwrap();
        let mut after = before.clone();
        // Another workflow denies and allows its own tables: the same shard for `t1`.
        apply_denied_tables(
            &mut after,
            TabletType::Primary,
            &[],
            &tables(&["t5"]),
            DeniedTablesOp::Add,
        )
        .unwrap();
        apply_denied_tables(
            &mut after,
            TabletType::Primary,
            &[],
            &tables(&["t9"]),
            DeniedTablesOp::Remove,
        )
        .unwrap();
        assert!(same_for_tables(&before, &after, &mine));
        // This workflow's table denied: changed.
        let mut denied = after.clone();
        apply_denied_tables(
            &mut denied,
            TabletType::Primary,
            &[],
            &mine,
            DeniedTablesOp::Add,
        )
        .unwrap();
        assert!(!same_for_tables(&after, &denied, &mine));
        // Denied for another tablet type only, or in some cells only: changed.
        let mut replica = after.clone();
        apply_denied_tables(
            &mut replica,
            TabletType::Replica,
            &[],
            &mine,
            DeniedTablesOp::Add,
        )
        .unwrap();
        assert!(!same_for_tables(&after, &replica, &mine));
        let mut in_cell = after.clone();
        in_cell.tablet_controls.push(TabletControl {
            tablet_type: TabletType::Primary as i32,
            cells: vec!["zone1".into()],
            denied_tables: mine.clone(),
            ..Default::default()
        });
        assert!(!same_for_tables(&after, &in_cell, &mine));
        // A reparent, a new term, a frozen control: changed, whatever the tables.
        let mut reparented = after.clone();
        reparented.primary_alias = Some(Default::default());
        assert!(!same_for_tables(&after, &reparented, &mine));
        let mut new_term = after.clone();
        new_term.primary_term_start_time = Some(Default::default());
        assert!(!same_for_tables(&after, &new_term, &mine));
        let mut frozen = after.clone();
        frozen.tablet_controls.push(TabletControl {
            tablet_type: TabletType::Primary as i32,
            frozen: true,
            ..Default::default()
        });
        assert!(!same_for_tables(&after, &frozen, &mine));
    }

    #[test]
    fn add_creates_sorted_deduplicated_entry() {
        let mut shard = Shard::default();
        let changed = apply_denied_tables(
            &mut shard,
            TabletType::Primary,
            &[],
            &tables(&["t2", "t1", "t2"]),
            DeniedTablesOp::Add,
        )
        .unwrap();
        assert!(changed);
        assert_eq!(shard.tablet_controls.len(), 1);
        assert_eq!(
            shard.tablet_controls[0].tablet_type,
            TabletType::Primary as i32
        );
        assert_eq!(
            shard.tablet_controls[0].denied_tables,
            tables(&["t1", "t2"])
        );
    }

    #[test]
    fn add_merges_and_is_idempotent() {
        let mut shard = Shard::default();
        apply_denied_tables(
            &mut shard,
            TabletType::Primary,
            &[],
            &tables(&["b"]),
            DeniedTablesOp::Add,
        )
        .unwrap();
        assert!(
            apply_denied_tables(
                &mut shard,
                TabletType::Primary,
                &[],
                &tables(&["a", "b"]),
                DeniedTablesOp::Add
            )
            .unwrap()
        );
        assert_eq!(
            denied_tables(&shard, TabletType::Primary),
            tables(&["a", "b"])
        );
        assert!(
            !apply_denied_tables(
                &mut shard,
                TabletType::Primary,
                &[],
                &tables(&["a"]),
                DeniedTablesOp::Add
            )
            .unwrap()
        );
        // Other tablet types are independent entries.
        assert!(
            apply_denied_tables(
                &mut shard,
                TabletType::Replica,
                &tables(&["zone1"]),
                &tables(&["a"]),
                DeniedTablesOp::Add
            )
            .unwrap()
        );
        assert_eq!(shard.tablet_controls.len(), 2);
        assert_eq!(shard.tablet_controls[1].cells, tables(&["zone1"]));
    }

    #[test]
    fn remove_drops_tables_then_entry() {
        let mut shard = Shard::default();
        apply_denied_tables(
            &mut shard,
            TabletType::Primary,
            &[],
            &tables(&["a", "b"]),
            DeniedTablesOp::Add,
        )
        .unwrap();
        assert!(
            !apply_denied_tables(
                &mut shard,
                TabletType::Primary,
                &[],
                &tables(&["zzz"]),
                DeniedTablesOp::Remove
            )
            .unwrap()
        );
        assert!(
            apply_denied_tables(
                &mut shard,
                TabletType::Primary,
                &[],
                &tables(&["a"]),
                DeniedTablesOp::Remove
            )
            .unwrap()
        );
        assert_eq!(denied_tables(&shard, TabletType::Primary), tables(&["b"]));
        assert!(
            apply_denied_tables(
                &mut shard,
                TabletType::Primary,
                &[],
                &tables(&["b"]),
                DeniedTablesOp::Remove
            )
            .unwrap()
        );
        assert!(shard.tablet_controls.is_empty());
        assert!(
            !apply_denied_tables(
                &mut shard,
                TabletType::Primary,
                &[],
                &tables(&["b"]),
                DeniedTablesOp::Remove
            )
            .unwrap()
        );
    }

    #[test]
    fn rejects_blank_names() {
        let mut shard = Shard::default();
        assert!(
            apply_denied_tables(
                &mut shard,
                TabletType::Primary,
                &[],
                &tables(&[" "]),
                DeniedTablesOp::Add
            )
            .is_err()
        );
    }

    #[test]
    fn cells_merge() {
        assert_eq!(
            merge_cells(&tables(&["a"]), &tables(&["b"])),
            tables(&["a", "b"])
        );
        assert!(merge_cells(&tables(&["a"]), &[]).is_empty());
        assert_eq!(
            merge_cells(&tables(&["b", "a"]), &tables(&["a"])),
            tables(&["b", "a"])
        );
    }
}

//! The observed traffic state of a workflow and Vitess's traffic state string
//! (`docs/design/movetables.md`, "Vitess's traffic state string"), e.g. `All Reads Switched. Writes Not Switched`.
//!
//! The observation follows Vitess so that both tools print the same string for the same topology:
//!
//! * **Writes** come from the **global** `RoutingRules`: writes are switched if, for any moved
//!   table, the rule `S.T` exists and its first target is not `S.T`.
//! * **Reads** come from **each cell's** `SrvVSchema`, looking at the *first* moved table only:
//!   REPLICA (RDONLY) reads are switched in a cell if that cell's rules hold `S.T@replica`
//!   (`S.T@rdonly`) with a target outside `S`. A cell without a `SrvVSchema`, or without the rule,
//!   counts as not switched.
//! * Partial (shard-by-shard) workflows are read from the shard routing rules instead.
//!
//! For a `_reverse` workflow Vitess swaps the keyspaces first; callers do the same by passing a
//! [`MovedTables`] with source and target swapped.

use std::collections::BTreeSet;
use std::fmt;

use super::by_table::RulesByTable;
use super::names::{KeyspaceName, QualifiedTable, TableName, TrafficType};
use super::placement::MovedTables;
use crate::vitess::proto::vschema;

/// The cells split by whether one read type is switched there. Both lists are sorted (Vitess lists
/// cells in the sorted order of the topology directory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellSplit {
    /// Cells whose vtgates send these reads to the target.
    pub switched: Vec<String>,
    /// Cells whose vtgates still send them to the source.
    pub not_switched: Vec<String>,
}

impl CellSplit {
    /// Builds a sorted split from `(cell, switched)` pairs.
    pub fn from_cells<S: Into<String>>(cells: impl IntoIterator<Item = (S, bool)>) -> Self {
        let mut switched = BTreeSet::new();
        let mut not_switched = BTreeSet::new();
        for (cell, is_switched) in cells {
            if is_switched {
                switched.insert(cell.into());
            } else {
                not_switched.insert(cell.into());
            }
        }
        Self {
            switched: switched.into_iter().collect(),
            not_switched: not_switched.into_iter().collect(),
        }
    }
}

/// Traffic state of a standard (table-level) MoveTables workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableTrafficState {
    /// REPLICA reads per cell.
    pub replica: CellSplit,
    /// RDONLY reads per cell.
    pub rdonly: CellSplit,
    /// Whether writes are switched (from the global rules).
    pub writes_switched: bool,
}

/// Traffic state of a partial (shard-by-shard) MoveTables workflow, where reads and writes move
/// together per shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardTrafficState {
    /// Source shards whose traffic goes to the target (sorted).
    pub switched_shards: Vec<String>,
    /// Source shards whose traffic still goes to the source (sorted).
    pub unswitched_shards: Vec<String>,
}

/// The traffic state of a workflow; its `Display` is Vitess's state string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrafficState {
    /// A standard MoveTables workflow.
    Tables(TableTrafficState),
    /// A partial MoveTables workflow.
    Shards(ShardTrafficState),
}

impl fmt::Display for TrafficState {
    /// Renders the parts, joined with `". "`, exactly as Vitess does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        match self {
            TrafficState::Tables(state) => {
                parts.extend(read_parts(state));
                parts.push(
                    if state.writes_switched {
                        "Writes Switched"
                    } else {
                        "Writes Not Switched"
                    }
                    .to_owned(),
                );
            }
            TrafficState::Shards(state) => {
                let switched = state.switched_shards.join(",");
                match (
                    state.switched_shards.is_empty(),
                    state.unswitched_shards.is_empty(),
                ) {
                    (false, false) => {
                        parts.push(format!("Reads partially switched, for shards: {switched}"));
                        parts.push(format!("Writes partially switched, for shards: {switched}"));
                    }
                    (true, _) => {
                        parts.push("Reads Not Switched".to_owned());
                        parts.push("Writes Not Switched".to_owned());
                    }
                    (false, true) => {
                        parts.push("All Reads Switched".to_owned());
                        parts.push("All Writes Switched".to_owned());
                    }
                }
            }
        }
        f.write_str(&parts.join(". "))
    }
}

/// The read half of the string: "All Reads Switched", "Reads Not Switched", or "Reads partially
/// switched" followed by one phrase per read type.
fn read_parts(state: &TableTrafficState) -> Vec<String> {
    let (replica, rdonly) = (&state.replica, &state.rdonly);
    // "All" needs at least one switched REPLICA cell, as in Vitess.
    if rdonly.not_switched.is_empty()
        && replica.not_switched.is_empty()
        && !replica.switched.is_empty()
    {
        return vec!["All Reads Switched".to_owned()];
    }
    if rdonly.switched.is_empty() && replica.switched.is_empty() {
        return vec!["Reads Not Switched".to_owned()];
    }
    let phrase = |split: &CellSplit, all: &str, none: &str, some: &str| {
        if split.not_switched.is_empty() {
            all.to_owned()
        } else if split.switched.is_empty() {
            none.to_owned()
        } else {
            format!("{some}{}", split.switched.join(","))
        }
    };
    vec![
        "Reads partially switched".to_owned(),
        phrase(
            replica,
            "All Replica Reads Switched",
            "Replica not switched",
            "Replica switched in cells: ",
        ),
        phrase(
            rdonly,
            "All Rdonly Reads Switched",
            "Rdonly not switched",
            "Rdonly switched in cells: ",
        ),
    ]
}

/// A stored rule target that is not `keyspace.table`, which makes Vitess's state computation fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule target is not correctly formatted: {target}")]
pub struct MalformedRuleTarget {
    /// The target as stored.
    pub target: String,
}

/// Whether writes are switched, from the global rules: for some moved table, `S.T` has a rule
/// whose first target is not `S.T`. Like Vitess, which loads the rules into a map, the last
/// rule wins when a key is stored twice. Only the moved tables' rules are looked at.
pub fn writes_switched(global: &RulesByTable, moved: &MovedTables) -> bool {
    moved.tables.iter().any(|table| {
        let key = QualifiedTable::new(moved.source.clone(), table.clone()).to_string();
        global
            .of_tables([table.as_str()])
            .into_iter()
            .rfind(|rule| rule.from_table == key)
            .and_then(|rule| rule.to_tables.first())
            .is_some_and(|first| *first != key)
    })
}

/// Where a pass finds the rule a cell's vtgates serve for a key: the *first* rule with that
/// `from_table` in the cell's `SrvVSchema` (Vitess scans the list and stops there). A record
/// answers by that scan; an index made once per version of the record
/// (`srv_vschema::CellDifference`) answers by lookup, so a pass's cost does not grow with
/// every other workflow's rules.
pub trait CellRules {
    /// The targets of the first rule keyed `key`, if any.
    fn first_rule_targets(&self, key: &str) -> Option<&[String]>;
}

impl CellRules for vschema::SrvVSchema {
    fn first_rule_targets(&self, key: &str) -> Option<&[String]> {
        self.routing_rules
            .as_ref()?
            .rules
            .iter()
            .find(|rule| rule.from_table == key)
            .map(|rule| rule.to_tables.as_slice())
    }
}

/// Whether one cell serves one read type of `source.table` from elsewhere: the first rule keyed
/// `S.T@type` in the cell's rules ([`CellRules`]; `None`: the cell has no `SrvVSchema`) has a
/// target outside `source`.
pub fn cell_reads_switched(
    cell_rules: Option<&dyn CellRules>,
    source: &KeyspaceName,
    table: &TableName,
    traffic: TrafficType,
) -> Result<bool, MalformedRuleTarget> {
    let key = format!("{source}.{table}@{traffic}");
    let Some(targets) = cell_rules.and_then(|rules| rules.first_rule_targets(&key)) else {
        return Ok(false);
    };
    for target in targets {
        let to = QualifiedTable::parse(target).ok_or_else(|| MalformedRuleTarget {
            target: target.clone(),
        })?;
        if to.keyspace != *source {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Observes a standard workflow: write state from the global rules, read state per cell from the
/// cells' rules ([`CellRules`]). Pass every cell of the topology (`cells/` in the global topo),
/// with `None` for a cell whose `SrvVSchema` does not exist: Vitess counts every cell, so a
/// missing cell would change the string.
pub fn observe_table_traffic<'a>(
    moved: &MovedTables,
    global: &RulesByTable,
    cells: impl IntoIterator<Item = (&'a str, Option<&'a dyn CellRules>)>,
) -> Result<TableTrafficState, MalformedRuleTarget> {
    let mut replica = Vec::new();
    let mut rdonly = Vec::new();
    if let Some(first) = moved.tables.first() {
        for (cell, rules) in cells {
            replica.push((
                cell,
                cell_reads_switched(rules, &moved.source, first, TrafficType::Replica)?,
            ));
            rdonly.push((
                cell,
                cell_reads_switched(rules, &moved.source, first, TrafficType::Rdonly)?,
            ));
        }
    }
    Ok(TableTrafficState {
        replica: CellSplit::from_cells(replica),
        rdonly: CellSplit::from_cells(rdonly),
        writes_switched: writes_switched(global, moved),
    })
}

/// Observes a partial workflow from the shard routing rules: a rule for a shard pointing to the
/// source means not switched, to the target means switched; other rules are ignored.
pub fn observe_shard_traffic(
    shard_rules: &vschema::ShardRoutingRules,
    moved: &MovedTables,
) -> ShardTrafficState {
    let mut switched = BTreeSet::new();
    let mut unswitched = BTreeSet::new();
    for rule in &shard_rules.rules {
        if rule.to_keyspace == moved.source.as_str() {
            unswitched.insert(rule.shard.clone());
        } else if rule.to_keyspace == moved.target.as_str() {
            switched.insert(rule.shard.clone());
        }
    }
    ShardTrafficState {
        switched_shards: switched.into_iter().collect(),
        unswitched_shards: unswitched.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(switched: &[&str], not_switched: &[&str]) -> CellSplit {
        CellSplit {
            switched: switched.iter().map(|s| (*s).to_owned()).collect(),
            not_switched: not_switched.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn cell_split_sorts() {
        let s = CellSplit::from_cells([("zone2", true), ("zone1", true), ("zone3", false)]);
        assert_eq!(s, split(&["zone1", "zone2"], &["zone3"]));
    }

    #[test]
    fn no_cells_reads_as_not_switched() {
        let state = TrafficState::Tables(TableTrafficState::default());
        assert_eq!(state.to_string(), "Reads Not Switched. Writes Not Switched");
    }

    #[test]
    fn rdonly_only_cells_cannot_be_all_switched() {
        // Vitess requires a switched REPLICA cell for "All Reads Switched".
        let state = TrafficState::Tables(TableTrafficState {
            replica: split(&[], &[]),
            rdonly: split(&["zone1"], &[]),
            writes_switched: false,
        });
        assert_eq!(
            state.to_string(),
            "Reads partially switched. All Replica Reads Switched. All Rdonly Reads Switched. Writes Not Switched"
        );
    }

    #[test]
    fn writes_follow_the_last_stored_rule() {
        let rule = |to: &str| vschema::RoutingRule {
            from_table: "S.T".to_owned(),
            to_tables: vec![to.to_owned()],
        };
        let moved = MovedTables::new("S", "K", ["T"]);
        let rules = |list: Vec<vschema::RoutingRule>| {
            RulesByTable::new(std::sync::Arc::new(vschema::RoutingRules { rules: list }))
        };
        assert!(writes_switched(
            &rules(vec![rule("S.T"), rule("K.T")]),
            &moved
        ));
        assert!(!writes_switched(
            &rules(vec![rule("K.T"), rule("S.T")]),
            &moved
        ));
        assert!(!writes_switched(&rules(vec![]), &moved));
    }

    #[test]
    fn malformed_targets_are_reported() {
        let srv = vschema::SrvVSchema {
            routing_rules: Some(vschema::RoutingRules {
                rules: vec![vschema::RoutingRule {
                    from_table: "S.T@replica".to_owned(),
                    to_tables: vec!["T".to_owned()],
                }],
            }),
            ..Default::default()
        };
        assert!(
            cell_reads_switched(
                Some(&srv as &dyn CellRules),
                &"S".into(),
                &"T".into(),
                TrafficType::Replica
            )
            .is_err()
        );
        assert_eq!(
            cell_reads_switched(None, &"S".into(), &"T".into(), TrafficType::Replica),
            Ok(false)
        );
    }
}

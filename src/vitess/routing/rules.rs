//! The table routing rules of a MoveTables workflow (`docs/design/movetables.md`, "Routing rules"), and how to
//! rewrite the global `RoutingRules` so that only one workflow's keys change.
//!
//! Every moved table `T` owns nine keys: `T`, `K.T` and `S.T`, each bare (PRIMARY) and with
//! `@replica` and `@rdonly`. Each existing key has exactly one target. Which keys exist and where
//! they point follows from the table's [`RoutingState`]; [`table_rules`] spells it out, and
//! [`derive_routing_state`] recognises it again in stored rules.
//!
//! The global `RoutingRules` object is shared by every workflow (and by people applying rules by
//! hand), so [`update_routing_rules`] replaces this workflow's keys and nothing else. Its output
//! order is deterministic: rules it does not own keep their position, owned rules are rewritten in
//! place, and owned rules that did not exist yet are appended in canonical order (table order of
//! the workflow, then the key order of `docs/design/movetables.md`). When nothing changes, the output equals the input
//! and the diff is empty, which is what lets a converged reconcile pass write nothing.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::by_table::RulesByTable;
use super::names::{KeyspaceName, QualifiedTable, RuleKey, TableName, TrafficType};
use super::placement::{MovedTables, RoutingState, Side};
use crate::vitess::proto::vschema;

/// One routing rule of a moved table: `key` routes to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRule {
    /// The rule key (`from_table`).
    pub key: RuleKey,
    /// The single target (`to_tables[0]`).
    pub to: QualifiedTable,
}

impl TableRule {
    /// The protobuf form stored in the topology.
    pub fn to_proto(&self) -> vschema::RoutingRule {
        vschema::RoutingRule {
            from_table: self.key.from_table(),
            to_tables: vec![self.to.to_string()],
        }
    }
}

/// The nine keys a moved table owns, in canonical order: `T`, `T@replica`, `T@rdonly`,
/// `K.T`, `K.T@replica`, `K.T@rdonly`, `S.T`, `S.T@replica`, `S.T@rdonly`.
pub fn table_rule_keys(
    source: &KeyspaceName,
    target: &KeyspaceName,
    table: &TableName,
) -> Vec<RuleKey> {
    [None, Some(target), Some(source)]
        .into_iter()
        .flat_map(|qualifier| {
            TrafficType::ALL
                .into_iter()
                .map(move |traffic| RuleKey::new(qualifier, table, traffic))
        })
        .collect()
}

/// Where one key of a moved table points in a given state, or `None` if the key does not exist.
fn rule_target(
    source: &KeyspaceName,
    target: &KeyspaceName,
    key: &RuleKey,
    state: RoutingState,
) -> Option<QualifiedTable> {
    let RoutingState::Routed(routed) = state else {
        return None;
    };
    let on = |side: Side| {
        let keyspace = match side {
            Side::Source => source,
            Side::Target => target,
        };
        QualifiedTable::new(keyspace.clone(), key.table.clone())
    };
    let side = routed.placement().side(key.traffic);
    if key.traffic != TrafficType::Primary {
        // `switchTableReads` rewrites the three `@type` keys together, always to `<side>.T`.
        return Some(on(side));
    }
    let qualifier = key.keyspace.as_ref();
    match side {
        // `changeWriteRoute` forward: `K.T` deleted (K serves its own table), `T` and `S.T` → `K.T`.
        Side::Target if qualifier == Some(target) => None,
        Side::Target => Some(on(Side::Target)),
        // Reverse writes: the same step run from `wf_reverse`, so `S.T` is deleted instead.
        Side::Source if routed.is_writes_reversed() && qualifier == Some(source) => None,
        // As created by `setupInitialRoutingRules`: everything → `S.T`.
        Side::Source => Some(on(Side::Source)),
    }
}

/// The exact rules of one moved table in `state`, in canonical key order (absent keys
/// skipped). `source` and `target` must differ, as they do for every MoveTables workflow.
pub fn table_rules(
    source: &KeyspaceName,
    target: &KeyspaceName,
    table: &TableName,
    state: RoutingState,
) -> Vec<TableRule> {
    table_rule_keys(source, target, table)
        .into_iter()
        .filter_map(|key| rule_target(source, target, &key, state).map(|to| TableRule { key, to }))
        .collect()
}

/// How one rule key changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleChange {
    /// The key that changes.
    pub key: RuleKey,
    /// The target lists of every stored rule with this key, in stored order. Empty when the key
    /// is new; more than one entry only when the stored rules were corrupt (duplicate keys, which
    /// vtgate turns into an error for that key), and the update collapses them.
    pub before: Vec<Vec<String>>,
    /// The new target, or `None` when the key is deleted.
    pub after: Option<QualifiedTable>,
}

/// The kind of a [`RuleChange`], for logs and dry-run output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleChangeKind {
    /// The key did not exist.
    Added,
    /// The key is deleted.
    Removed,
    /// The key exists and points elsewhere (or was duplicated).
    Changed,
}

impl RuleChange {
    /// Whether the key is added, removed or changed.
    pub fn kind(&self) -> RuleChangeKind {
        match (self.before.is_empty(), &self.after) {
            (true, _) => RuleChangeKind::Added,
            (false, None) => RuleChangeKind::Removed,
            (false, Some(_)) => RuleChangeKind::Changed,
        }
    }
}

/// The keys an update changes. The executor uses it to skip writes when nothing changes and to
/// check that it holds the Vitess locks of every keyspace the change affects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesDiff {
    /// One entry per changed key, in canonical order.
    pub changes: Vec<RuleChange>,
}

impl RulesDiff {
    /// True when the stored rules already match: nothing to write.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changed keys.
    pub fn keys(&self) -> impl Iterator<Item = &RuleKey> {
        self.changes.iter().map(|change| &change.key)
    }

    /// Every keyspace the change mentions: key qualifiers, old targets and new targets. Vitess
    /// holds the lock of each keyspace whose routing it changes (I3), so this is the set the
    /// executor's lock guards must cover.
    pub fn keyspaces(&self) -> BTreeSet<KeyspaceName> {
        let mut keyspaces = BTreeSet::new();
        for change in &self.changes {
            keyspaces.extend(change.key.keyspace.clone());
            keyspaces.extend(change.after.as_ref().map(|to| to.keyspace.clone()));
            for targets in &change.before {
                keyspaces.extend(
                    targets
                        .iter()
                        .filter_map(|t| QualifiedTable::parse(t))
                        .map(|t| t.keyspace),
                );
            }
        }
        keyspaces
    }

    /// The traffic types whose rules change: a change limited to reads is a `switchReads`, one
    /// that includes PRIMARY is a write switch and needs the full cutover.
    pub fn traffic_types(&self) -> BTreeSet<TrafficType> {
        self.keys().map(|key| key.traffic).collect()
    }
}

/// The new global rules and what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesUpdate {
    /// The full `RoutingRules` to store.
    pub rules: vschema::RoutingRules,
    /// The keys that differ from the input.
    pub diff: RulesDiff,
}

/// Replaces the workflow's keys in `current` so every moved table is in `state`, leaving every
/// other rule untouched (see the module docs for the output order).
pub fn update_routing_rules(
    current: &vschema::RoutingRules,
    moved: &MovedTables,
    state: RoutingState,
) -> RulesUpdate {
    update_routing_rules_per_table(current, moved, |_| state)
}

/// Like [`update_routing_rules`], with a state chosen per table (for repairing a workflow whose
/// tables drifted apart).
pub fn update_routing_rules_per_table(
    current: &vschema::RoutingRules,
    moved: &MovedTables,
    mut state_of: impl FnMut(&TableName) -> RoutingState,
) -> RulesUpdate {
    let (desired, owned) = owned_targets(moved, &mut state_of);

    let mut rules = Vec::with_capacity(current.rules.len() + desired.len());
    let mut before: HashMap<&str, Vec<Vec<String>>> = HashMap::new();
    let mut written: HashSet<&str> = HashSet::new();
    for rule in &current.rules {
        let Some(&index) = owned.get(&rule.from_table) else {
            rules.push(rule.clone());
            continue;
        };
        before
            .entry(rule.from_table.as_str())
            .or_default()
            .push(rule.to_tables.clone());
        // Rewrite in place at the first occurrence; later duplicates are dropped.
        if written.insert(rule.from_table.as_str())
            && let Some(to) = &desired[index].2
        {
            rules.push(single_target_rule(&rule.from_table, to));
        }
    }
    for (from_table, _, to) in &desired {
        if let Some(to) = to
            && !written.contains(from_table.as_str())
        {
            rules.push(single_target_rule(from_table, to));
        }
    }

    let changes = desired
        .iter()
        .filter_map(|(from_table, key, to)| {
            let stored = before.remove(from_table.as_str()).unwrap_or_default();
            let unchanged = match to {
                None => stored.is_empty(),
                Some(to) => stored.len() == 1 && stored[0] == [to.to_string()],
            };
            (!unchanged).then(|| RuleChange {
                key: key.clone(),
                before: stored,
                after: to.clone(),
            })
        })
        .collect();

    RulesUpdate {
        rules: vschema::RoutingRules { rules },
        diff: RulesDiff { changes },
    }
}

/// The desired value of every key the workflow owns, in canonical order, and each key's index
/// in it. A key seen twice (a table listed twice) keeps its first value.
#[allow(clippy::type_complexity)]
fn owned_targets(
    moved: &MovedTables,
    mut state_of: impl FnMut(&TableName) -> RoutingState,
) -> (
    Vec<(String, RuleKey, Option<QualifiedTable>)>,
    HashMap<String, usize>,
) {
    let mut desired: Vec<(String, RuleKey, Option<QualifiedTable>)> = Vec::new();
    let mut owned: HashMap<String, usize> = HashMap::new();
    for table in &moved.tables {
        let state = state_of(table);
        for key in table_rule_keys(&moved.source, &moved.target, table) {
            let from_table = key.from_table();
            if owned.contains_key(&from_table) {
                continue;
            }
            let to = rule_target(&moved.source, &moved.target, &key, state);
            owned.insert(from_table.clone(), desired.len());
            desired.push((from_table, key, to));
        }
    }
    (desired, owned)
}

/// The keys a workflow owns (nine per table) and the rules [`update_routing_rules`] gives them
/// in `state`; every other rule it leaves as it is. Lets a pass compare a cell's rules with what
/// the workflow wants at the cost of its own tables.
pub fn owned_rules(
    moved: &MovedTables,
    state: RoutingState,
) -> (BTreeSet<String>, Vec<vschema::RoutingRule>) {
    let (desired, _) = owned_targets(moved, |_| state);
    let keys = desired.iter().map(|(key, _, _)| key.clone()).collect();
    let rules = desired
        .iter()
        .filter_map(|(key, _, to)| to.as_ref().map(|to| single_target_rule(key, to)))
        .collect();
    (keys, rules)
}

fn single_target_rule(from_table: &str, to: &QualifiedTable) -> vschema::RoutingRule {
    vschema::RoutingRule {
        from_table: from_table.to_owned(),
        to_tables: vec![to.to_string()],
    }
}

/// Recognises which [`RoutingState`] a table's stored rules spell, or `None` when they match no
/// state exactly (missing or extra keys, duplicates, multi-target rules, foreign targets: a
/// half-applied or hand-edited state the planner must repair).
///
/// This is the textual view; for "where does traffic actually go" use the resolver
/// ([`super::resolve::RoutingView`]), which treats states A and D as the same routing.
pub fn derive_routing_state(
    rules: &vschema::RoutingRules,
    source: &KeyspaceName,
    target: &KeyspaceName,
    table: &TableName,
) -> Option<RoutingState> {
    derive_from(&rules.rules, source, target, table)
}

/// [`derive_routing_state`] over the table's rules only (the others cannot name its keys).
pub fn derive_routing_state_by_table(
    rules: &RulesByTable,
    source: &KeyspaceName,
    target: &KeyspaceName,
    table: &TableName,
) -> Option<RoutingState> {
    derive_from(rules.of_tables([table.as_str()]), source, target, table)
}

/// [`derive_workflow_routing_state`] over the workflow's tables' rules only.
pub fn derive_workflow_routing_state_by_table(
    rules: &RulesByTable,
    moved: &MovedTables,
) -> Option<RoutingState> {
    one_state(moved, |source, target, table| {
        derive_routing_state_by_table(rules, source, target, table)
    })
}

/// The state every table of `moved` is in by `derive`: `None` if there are no tables, a table
/// is in no state, or two tables disagree.
fn one_state(
    moved: &MovedTables,
    derive: impl Fn(&KeyspaceName, &KeyspaceName, &TableName) -> Option<RoutingState>,
) -> Option<RoutingState> {
    let mut states = moved
        .tables
        .iter()
        .map(|table| derive(&moved.source, &moved.target, table));
    let first = states.next()??;
    states.all(|state| state == Some(first)).then_some(first)
}

fn derive_from<'a>(
    rules: impl IntoIterator<Item = &'a vschema::RoutingRule>,
    source: &KeyspaceName,
    target: &KeyspaceName,
    table: &TableName,
) -> Option<RoutingState> {
    let keys = table_rule_keys(source, target, table);
    let mut stored: Vec<Option<&str>> = vec![None; keys.len()];
    let index: HashMap<String, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| (key.from_table(), i))
        .collect();
    for rule in rules {
        if let Some(&i) = index.get(&rule.from_table) {
            let [only] = rule.to_tables.as_slice() else {
                return None;
            };
            if stored[i].replace(only.as_str()).is_some() {
                return None;
            }
        }
    }
    RoutingState::every().find(|&state| {
        keys.iter().zip(&stored).all(|(key, stored)| {
            let expected = rule_target(source, target, key, state).map(|t| t.to_string());
            expected.as_deref() == *stored
        })
    })
}

/// The state every table of the workflow is in, or `None` if some table's rules match no state
/// or the tables disagree.
pub fn derive_workflow_routing_state(
    rules: &vschema::RoutingRules,
    moved: &MovedTables,
) -> Option<RoutingState> {
    one_state(moved, |source, target, table| {
        derive_routing_state(rules, source, target, table)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(from: &str, to: &[&str]) -> vschema::RoutingRule {
        vschema::RoutingRule {
            from_table: from.to_owned(),
            to_tables: to.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn moved() -> MovedTables {
        MovedTables::new("S", "K", ["T"])
    }

    #[test]
    fn created_rules_are_nine_rules_to_the_source() {
        let m = moved();
        let rules = table_rules(&m.source, &m.target, &m.tables[0], RoutingState::CREATED);
        let rendered: Vec<_> = rules
            .iter()
            .map(|r| (r.key.from_table(), r.to.to_string()))
            .collect();
        let expected: Vec<_> = [
            "T",
            "T@replica",
            "T@rdonly",
            "K.T",
            "K.T@replica",
            "K.T@rdonly",
            "S.T",
            "S.T@replica",
            "S.T@rdonly",
        ]
        .iter()
        .map(|k| ((*k).to_owned(), "S.T".to_owned()))
        .collect();
        assert_eq!(rendered, expected);
    }

    #[test]
    fn update_is_a_no_op_when_converged() {
        let m = moved();
        let first = update_routing_rules(
            &vschema::RoutingRules::default(),
            &m,
            RoutingState::SWITCHED,
        );
        assert_eq!(first.diff.changes.len(), 8);
        let second = update_routing_rules(&first.rules, &m, RoutingState::SWITCHED);
        assert!(second.diff.is_empty());
        assert_eq!(second.rules, first.rules);
    }

    #[test]
    fn update_rewrites_in_place_and_keeps_foreign_rules_where_they_were() {
        let m = moved();
        let current = vschema::RoutingRules {
            rules: vec![
                rule("other", &["X.other"]),
                rule("S.T", &["S.T"]),
                rule("zzz@replica", &["Y.zzz"]),
            ],
        };
        let update = update_routing_rules(&current, &m, RoutingState::SWITCHED);
        assert_eq!(update.rules.rules[0], rule("other", &["X.other"]));
        assert_eq!(update.rules.rules[1], rule("S.T", &["K.T"]));
        assert_eq!(update.rules.rules[2], rule("zzz@replica", &["Y.zzz"]));
        // Appended in canonical order, K.T skipped (deleted in state C), S.T already written.
        let appended: Vec<_> = update.rules.rules[3..]
            .iter()
            .map(|r| r.from_table.as_str())
            .collect();
        assert_eq!(
            appended,
            [
                "T",
                "T@replica",
                "T@rdonly",
                "K.T@replica",
                "K.T@rdonly",
                "S.T@replica",
                "S.T@rdonly"
            ]
        );
    }

    #[test]
    fn duplicates_of_owned_keys_are_collapsed_and_reported() {
        let m = moved();
        let mut current =
            update_routing_rules(&vschema::RoutingRules::default(), &m, RoutingState::CREATED)
                .rules;
        current.rules.push(rule("T", &["S.T"]));
        let update = update_routing_rules(&current, &m, RoutingState::CREATED);
        assert_eq!(update.diff.changes.len(), 1);
        assert_eq!(update.diff.changes[0].key.from_table(), "T");
        assert_eq!(update.diff.changes[0].before.len(), 2);
        assert_eq!(update.diff.changes[0].kind(), RuleChangeKind::Changed);
        assert_eq!(update.rules.rules.len(), 9);
    }

    #[test]
    fn diff_reports_keyspaces_and_traffic_types() {
        let m = moved();
        let created =
            update_routing_rules(&vschema::RoutingRules::default(), &m, RoutingState::CREATED);
        let reads = update_routing_rules(&created.rules, &m, RoutingState::READS_SWITCHED);
        assert_eq!(reads.diff.changes.len(), 6);
        assert_eq!(
            reads.diff.traffic_types(),
            BTreeSet::from([TrafficType::Replica, TrafficType::Rdonly])
        );
        assert_eq!(
            reads.diff.keyspaces(),
            BTreeSet::from([KeyspaceName::from("S"), KeyspaceName::from("K")])
        );
        let deleted = update_routing_rules(&reads.rules, &m, RoutingState::Deleted);
        assert_eq!(deleted.diff.changes.len(), 9);
        assert!(
            deleted
                .diff
                .changes
                .iter()
                .all(|c| c.kind() == RuleChangeKind::Removed)
        );
        assert!(deleted.rules.rules.is_empty());
    }

    #[test]
    fn derive_rejects_multi_target_and_duplicate_rules() {
        let m = moved();
        let mut rules =
            update_routing_rules(&vschema::RoutingRules::default(), &m, RoutingState::CREATED)
                .rules;
        assert_eq!(
            derive_routing_state(&rules, &m.source, &m.target, &m.tables[0]),
            Some(RoutingState::CREATED)
        );
        rules.rules[0].to_tables.push("K.T".to_owned());
        assert_eq!(
            derive_routing_state(&rules, &m.source, &m.target, &m.tables[0]),
            None
        );
        rules.rules[0].to_tables.pop();
        rules.rules.push(rule("S.T@rdonly", &["S.T"]));
        assert_eq!(
            derive_routing_state(&rules, &m.source, &m.target, &m.tables[0]),
            None
        );
    }

    #[test]
    fn workflow_state_needs_every_table_to_agree() {
        let m = MovedTables::new("S", "K", ["a", "b"]);
        let both = update_routing_rules(
            &vschema::RoutingRules::default(),
            &m,
            RoutingState::READS_SWITCHED,
        )
        .rules;
        assert_eq!(
            derive_workflow_routing_state(&both, &m),
            Some(RoutingState::READS_SWITCHED)
        );
        let split = update_routing_rules_per_table(&both, &m, |t| {
            if t.as_str() == "a" {
                RoutingState::CREATED
            } else {
                RoutingState::READS_SWITCHED
            }
        });
        assert_eq!(derive_workflow_routing_state(&split.rules, &m), None);
    }
}

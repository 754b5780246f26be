//! The pure part of Vitess's `RebuildVSchemaGraph` (`RebuildSrvVSchema`): what a cell's
//! `SrvVSchema` should contain, and whether a stored one is stale.
//!
//! A `SrvVSchema` is the rollup vtgates read: every keyspace's VSchema under the keyspace name
//! (a keyspace without a stored VSchema contributes an empty one; the caller supplies it), plus
//! the global table, shard and keyspace routing rules and the mirror rules, copied as they are.
//!
//! **Empty rule sets.** Vitess reads a missing `RoutingRules`, `ShardRoutingRules` or
//! `MirrorRules` key as an *empty message*, so its rebuild always sets those three fields
//! (`Some(empty)`, two bytes on the wire) — and its own read-state code dereferences the routing
//! rules of every cell without a nil check. A missing `KeyspaceRoutingRules` key reads as *nil*, so
//! that field is left unset (`None`). [`build_srv_vschema`] does the same, so vtmove writes the
//! bytes Vitess would write. [`srv_vschema_equivalent`] treats `None` and `Some(empty)` as equal,
//! since vtgate does, and so never rewrites a cell for that difference alone.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::vitess::proto::vschema;
use crate::vitess::routing::{
    CellRules, MovedTables, ReadCells, cell_routing_rules, derive_workflow_routing_state,
};

/// Builds the `SrvVSchema` every cell should hold for these inputs. `None` for a rule set means
/// its topology key does not exist.
pub fn build_srv_vschema<'a>(
    keyspace_vschemas: impl IntoIterator<Item = (&'a String, &'a vschema::Keyspace)>,
    routing_rules: Option<&vschema::RoutingRules>,
    shard_routing_rules: Option<&vschema::ShardRoutingRules>,
    keyspace_routing_rules: Option<&vschema::KeyspaceRoutingRules>,
    mirror_rules: Option<&vschema::MirrorRules>,
) -> vschema::SrvVSchema {
    vschema::SrvVSchema {
        keyspaces: keyspace_vschemas
            .into_iter()
            .map(|(name, keyspace)| (name.clone(), keyspace.clone()))
            .collect(),
        routing_rules: Some(routing_rules.cloned().unwrap_or_default()),
        shard_routing_rules: Some(shard_routing_rules.cloned().unwrap_or_default()),
        keyspace_routing_rules: keyspace_routing_rules.cloned(),
        mirror_rules: Some(mirror_rules.cloned().unwrap_or_default()),
    }
}

/// Whether two `SrvVSchema`s route every query the same way: same keyspace VSchemas (map order
/// never matters), same rules regardless of their order in the list, and an absent rule set equal
/// to an empty one.
///
/// Rule order is ignored because Vitess itself stores rules in map-iteration order; it only
/// matters for duplicate keys, which vtgate rejects anyway.
pub fn srv_vschema_equivalent(a: &vschema::SrvVSchema, b: &vschema::SrvVSchema) -> bool {
    a.keyspaces == b.keyspaces
        && sorted_routing_rules(a) == sorted_routing_rules(b)
        && sorted_shard_rules(a) == sorted_shard_rules(b)
        && sorted_keyspace_rules(a) == sorted_keyspace_rules(b)
        && sorted_mirror_rules(a) == sorted_mirror_rules(b)
}

/// Whether a cell must be rewritten: its `SrvVSchema` is missing or not equivalent to `desired`.
pub fn srv_vschema_is_stale(
    current: Option<&vschema::SrvVSchema>,
    desired: &vschema::SrvVSchema,
) -> bool {
    current.is_none_or(|current| !srv_vschema_equivalent(current, desired))
}

/// Whether `current` serves what `rollup` calls for with its routing rules replaced by `rules`,
/// leaving out on both sides the routing rules whose `from_table` is in `ignored`: the answer
/// [`srv_vschema_equivalent`] gives on the two records with those rules removed, without
/// building either (a pass asks it of every cell, and the records grow with the workflow
/// count).
pub fn srv_vschema_serves(
    current: &vschema::SrvVSchema,
    rollup: &vschema::SrvVSchema,
    rules: &vschema::RoutingRules,
    ignored: &std::collections::BTreeSet<String>,
) -> bool {
    fn kept<'a>(
        rules: impl Iterator<Item = &'a vschema::RoutingRule>,
        ignored: &std::collections::BTreeSet<String>,
    ) -> Vec<(&'a str, &'a [String])> {
        let mut kept: Vec<_> = rules
            .filter(|r| !ignored.contains(&r.from_table))
            .map(|r| (r.from_table.as_str(), r.to_tables.as_slice()))
            .collect();
        kept.sort_unstable();
        kept
    }
    current.keyspaces == rollup.keyspaces
        && kept(current.routing_rules.iter().flat_map(|r| &r.rules), ignored)
            == kept(rules.rules.iter(), ignored)
        && sorted_shard_rules(current) == sorted_shard_rules(rollup)
        && sorted_keyspace_rules(current) == sorted_keyspace_rules(rollup)
        && sorted_mirror_rules(current) == sorted_mirror_rules(rollup)
}

/// How a cell's `SrvVSchema` differs from what the global records call for, leaving any one
/// workflow's own rules aside: made once per version of the records and shared by every
/// workflow's pass, so each pass compares only its own keys (see
/// [`CellDifference::serves`]) and finds the rules its cell serves by lookup
/// ([`CellRules`]). It indexes the shared record by position rather than copying its rules.
#[derive(Debug)]
pub struct CellDifference {
    /// Whether the VSchemas and the shard, keyspace and mirror rules are equivalent.
    rest_equivalent: bool,
    /// The `from_table` keys whose rules (as multisets) differ between the cell and the global
    /// routing rules.
    differing_keys: BTreeSet<String>,
    /// The cell's record.
    cell: Arc<vschema::SrvVSchema>,
    /// Positions of the cell's routing rules ordered by key, then targets, then position: each
    /// key's rules are one run, sorted as a multiset.
    by_key: Vec<usize>,
}

impl CellDifference {
    /// Compares `current` (a cell's record) with `rollup` (the global records' SrvVSchema,
    /// whose routing rules are `global`).
    pub fn new(
        current: Arc<vschema::SrvVSchema>,
        rollup: &vschema::SrvVSchema,
        global: &vschema::RoutingRules,
    ) -> CellDifference {
        let by_key = positions_by_key(routing_rules_of(&current));
        let differing_keys = differing_keys(routing_rules_of(&current), &by_key, &global.rules);
        CellDifference {
            rest_equivalent: current.keyspaces == rollup.keyspaces
                && sorted_shard_rules(&current) == sorted_shard_rules(rollup)
                && sorted_keyspace_rules(&current) == sorted_keyspace_rules(rollup)
                && sorted_mirror_rules(&current) == sorted_mirror_rules(rollup),
            differing_keys,
            cell: current,
            by_key,
        }
    }

    /// What [`srv_vschema_serves`] answers for the cell when the desired routing rules are the
    /// global ones with the keys in `owned` set to `wanted` (and every other key unchanged),
    /// leaving out the keys in `ignored`; at the cost of `owned`.
    pub fn serves(
        &self,
        owned: &BTreeSet<String>,
        wanted: &[vschema::RoutingRule],
        ignored: &BTreeSet<String>,
    ) -> bool {
        if !self.rest_equivalent
            || self
                .differing_keys
                .iter()
                .any(|key| !owned.contains(key) && !ignored.contains(key))
        {
            return false;
        }
        let wanted_by_key = positions_by_key(wanted);
        let rules = routing_rules_of(&self.cell);
        owned
            .iter()
            .filter(|key| !ignored.contains(*key))
            .all(|key| {
                targets_of(rules, run_of(rules, &self.by_key, key))
                    .eq(targets_of(wanted, run_of(wanted, &wanted_by_key, key)))
            })
    }
}

impl CellRules for CellDifference {
    fn first_rule_targets(&self, key: &str) -> Option<&[String]> {
        let rules = routing_rules_of(&self.cell);
        let first = run_of(rules, &self.by_key, key).iter().min()?;
        rules.get(*first).map(|rule| rule.to_tables.as_slice())
    }
}

/// The keys whose rules (as multisets) differ between `cell` (indexed by `cell_by_key`) and
/// `global`: one merge of the two in key order.
fn differing_keys(
    cell: &[vschema::RoutingRule],
    cell_by_key: &[usize],
    global: &[vschema::RoutingRule],
) -> BTreeSet<String> {
    use std::cmp::Ordering;
    let global_by_key = positions_by_key(global);
    let mut cell_runs = runs(cell, cell_by_key).peekable();
    let mut global_runs = runs(global, &global_by_key).peekable();
    let mut differing = BTreeSet::new();
    loop {
        let order = match (cell_runs.peek(), global_runs.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((in_cell, _)), Some((in_global, _))) => in_cell.cmp(in_global),
        };
        let key = match order {
            Ordering::Less => cell_runs.next().map(|(key, _)| key),
            Ordering::Greater => global_runs.next().map(|(key, _)| key),
            Ordering::Equal => match (cell_runs.next(), global_runs.next()) {
                (Some((key, in_cell)), Some((_, in_global))) if in_cell != in_global => Some(key),
                _ => None,
            },
        };
        differing.extend(key.map(str::to_string));
    }
    differing
}

fn routing_rules_of(srv: &vschema::SrvVSchema) -> &[vschema::RoutingRule] {
    srv.routing_rules
        .as_ref()
        .map(|r| r.rules.as_slice())
        .unwrap_or_default()
}

/// The positions of `rules` ordered by key, then targets, then position.
fn positions_by_key(rules: &[vschema::RoutingRule]) -> Vec<usize> {
    let mut positions: Vec<usize> = (0..rules.len()).collect();
    positions.sort_unstable_by(|&a, &b| {
        let (ra, rb) = (&rules[a], &rules[b]);
        (&ra.from_table, &ra.to_tables, a).cmp(&(&rb.from_table, &rb.to_tables, b))
    });
    positions
}

/// The run of `by_key` (see [`positions_by_key`]) holding `key`'s rules.
fn run_of<'a>(rules: &[vschema::RoutingRule], by_key: &'a [usize], key: &str) -> &'a [usize] {
    let start = by_key.partition_point(|&i| rules[i].from_table.as_str() < key);
    let len = by_key[start..].partition_point(|&i| rules[i].from_table == key);
    &by_key[start..start + len]
}

/// The targets of the rules at `positions`.
fn targets_of<'a>(
    rules: &'a [vschema::RoutingRule],
    positions: &'a [usize],
) -> impl Iterator<Item = &'a [String]> {
    positions.iter().map(|&i| rules[i].to_tables.as_slice())
}

/// Each key of `by_key` with its rules' targets (a sorted multiset), in key order.
fn runs<'a>(
    rules: &'a [vschema::RoutingRule],
    by_key: &'a [usize],
) -> impl Iterator<Item = (&'a str, Vec<&'a [String]>)> {
    by_key
        .chunk_by(move |&a, &b| rules[a].from_table == rules[b].from_table)
        .filter_map(move |run| {
            let key = rules.get(*run.first()?)?.from_table.as_str();
            Some((key, targets_of(rules, run).collect()))
        })
}

fn sorted_routing_rules(srv: &vschema::SrvVSchema) -> Vec<(&str, &[String])> {
    let mut rules: Vec<_> = srv
        .routing_rules
        .iter()
        .flat_map(|r| &r.rules)
        .map(|r| (r.from_table.as_str(), r.to_tables.as_slice()))
        .collect();
    rules.sort_unstable();
    rules
}

fn sorted_shard_rules(srv: &vschema::SrvVSchema) -> Vec<(&str, &str, &str)> {
    let mut rules: Vec<_> = srv
        .shard_routing_rules
        .iter()
        .flat_map(|r| &r.rules)
        .map(|r| {
            (
                r.from_keyspace.as_str(),
                r.shard.as_str(),
                r.to_keyspace.as_str(),
            )
        })
        .collect();
    rules.sort_unstable();
    rules
}

fn sorted_keyspace_rules(srv: &vschema::SrvVSchema) -> Vec<(&str, &str)> {
    let mut rules: Vec<_> = srv
        .keyspace_routing_rules
        .iter()
        .flat_map(|r| &r.rules)
        .map(|r| (r.from_keyspace.as_str(), r.to_keyspace.as_str()))
        .collect();
    rules.sort_unstable();
    rules
}

fn sorted_mirror_rules(srv: &vschema::SrvVSchema) -> Vec<(&str, &str, u32)> {
    let mut rules: Vec<_> = srv
        .mirror_rules
        .iter()
        .flat_map(|r| &r.rules)
        // Bit patterns, so the comparison is total; percentages are copied, never computed.
        .map(|r| {
            (
                r.from_table.as_str(),
                r.to_table.as_str(),
                r.percent.to_bits(),
            )
        })
        .collect();
    rules.sort_unstable();
    rules
}

/// The `SrvVSchema` a cell should hold while a workflow moving `moved` switches reads only in
/// `read_cells`: the rollup with the routing section spelled for this cell
/// ([`cell_routing_rules`]). The executor writes it and the planner and invariant checks compare
/// against it, so all three use one definition.
pub fn cell_srv_vschema(
    moved: &MovedTables,
    read_cells: &ReadCells,
    rollup: &vschema::SrvVSchema,
    global_rules: &vschema::RoutingRules,
    cell: &str,
) -> vschema::SrvVSchema {
    let mut srv = rollup.clone();
    srv.routing_rules = Some(match derive_workflow_routing_state(global_rules, moved) {
        Some(state) => cell_routing_rules(global_rules, moved, state, read_cells, cell),
        None => global_rules.clone(),
    });
    srv
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn routing_rule(from: &str, to: &str) -> vschema::RoutingRule {
        vschema::RoutingRule {
            from_table: from.to_owned(),
            to_tables: vec![to.to_owned()],
        }
    }

    fn keyspaces() -> BTreeMap<String, vschema::Keyspace> {
        BTreeMap::from([
            ("S".to_owned(), vschema::Keyspace::default()),
            (
                "K".to_owned(),
                vschema::Keyspace {
                    sharded: true,
                    ..Default::default()
                },
            ),
        ])
    }

    #[test]
    fn missing_rule_sets_become_empty_except_keyspace_rules() {
        let srv = build_srv_vschema(&keyspaces(), None, None, None, None);
        assert_eq!(srv.keyspaces.len(), 2);
        assert_eq!(srv.routing_rules, Some(vschema::RoutingRules::default()));
        assert_eq!(
            srv.shard_routing_rules,
            Some(vschema::ShardRoutingRules::default())
        );
        assert_eq!(srv.keyspace_routing_rules, None);
        assert_eq!(srv.mirror_rules, Some(vschema::MirrorRules::default()));
        let krr = vschema::KeyspaceRoutingRules::default();
        let with_krr = build_srv_vschema(&keyspaces(), None, None, Some(&krr), None);
        assert_eq!(with_krr.keyspace_routing_rules, Some(krr));
    }

    #[test]
    fn equivalence_ignores_order_and_empty_versus_absent() {
        let rules = vschema::RoutingRules {
            rules: vec![routing_rule("a", "S.a"), routing_rule("b", "S.b")],
        };
        let reversed = vschema::RoutingRules {
            rules: rules.rules.iter().rev().cloned().collect(),
        };
        let a = build_srv_vschema(&keyspaces(), Some(&rules), None, None, None);
        let mut b = build_srv_vschema(&keyspaces(), Some(&reversed), None, None, None);
        b.shard_routing_rules = None;
        b.mirror_rules = None;
        b.keyspace_routing_rules = Some(vschema::KeyspaceRoutingRules::default());
        assert!(srv_vschema_equivalent(&a, &b));
        assert!(!srv_vschema_is_stale(Some(&b), &a));
        assert!(srv_vschema_is_stale(None, &a));
    }

    /// `srv_vschema_serves` answers as `srv_vschema_equivalent` does on records built with the
    /// given rules and stripped of the ignored ones, over every pairing of these variants.
    #[test]
    fn serving_agrees_with_equivalence_on_stripped_records() {
        let rules = |pairs: &[(&str, &str)]| vschema::RoutingRules {
            rules: pairs.iter().map(|(f, t)| routing_rule(f, t)).collect(),
        };
        let variants = [
            rules(&[("a", "S.a"), ("a@replica", "S.a")]),
            rules(&[("a@replica", "S.a"), ("a", "S.a")]),
            rules(&[("a", "S.a"), ("a@replica", "K.a")]),
            rules(&[("a", "K.a"), ("a@replica", "K.a")]),
            rules(&[("a", "S.a")]),
            rules(&[("a", "S.a"), ("a", "S.a"), ("b", "S.b")]),
            rules(&[]),
        ];
        let mut other_keyspaces = keyspaces();
        other_keyspaces.insert("X".to_owned(), vschema::Keyspace::default());
        let ignored_sets = [
            std::collections::BTreeSet::new(),
            std::collections::BTreeSet::from(["a@replica".to_owned()]),
        ];
        let strip = |srv: &vschema::SrvVSchema, ignored: &std::collections::BTreeSet<String>| {
            let mut srv = srv.clone();
            if let Some(r) = srv.routing_rules.as_mut() {
                r.rules.retain(|r| !ignored.contains(&r.from_table));
            }
            srv
        };
        let mut checked = 0;
        for ignored in &ignored_sets {
            for current_rules in &variants {
                for current_keyspaces in [keyspaces(), other_keyspaces.clone()] {
                    let current = build_srv_vschema(
                        &current_keyspaces,
                        Some(current_rules),
                        None,
                        None,
                        None,
                    );
                    for desired_rules in &variants {
                        let rollup =
                            build_srv_vschema(&keyspaces(), Some(&variants[0]), None, None, None);
                        let mut desired = rollup.clone();
                        desired.routing_rules = Some(desired_rules.clone());
                        assert_eq!(
                            srv_vschema_serves(&current, &rollup, desired_rules, ignored),
                            srv_vschema_equivalent(
                                &strip(&current, ignored),
                                &strip(&desired, ignored)
                            ),
                            "{current_rules:?} against {desired_rules:?}, ignoring {ignored:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 7 * 2 * 7);
    }

    /// A shared `CellDifference` answers as `srv_vschema_serves` does against the global rules
    /// with one workflow's keys rewritten to a state, for cells in every state of that workflow,
    /// with another workflow's rules, foreign edits, duplicates and missing keys.
    #[test]
    fn a_cell_difference_agrees_with_the_whole_comparison() {
        use crate::vitess::routing::{MovedTables, RoutingState, update_routing_rules};
        let mine = MovedTables::new("S", "K", ["a", "c"]);
        let other = MovedTables::new("S", "K", ["b"]);
        let states = [
            RoutingState::CREATED,
            RoutingState::READS_SWITCHED,
            RoutingState::WRITES_ONLY_SWITCHED,
            RoutingState::SWITCHED,
            RoutingState::REVERSED,
            RoutingState::Deleted,
        ];
        let base = update_routing_rules(
            &vschema::RoutingRules::default(),
            &other,
            RoutingState::READS_SWITCHED,
        )
        .rules;
        let mut cells: Vec<vschema::RoutingRules> = Vec::new();
        for state in states {
            let rules = update_routing_rules(&base, &mine, state).rules;
            let mut foreign = rules.clone();
            foreign.rules.push(routing_rule("b@replica", "S.b"));
            let mut duplicated = rules.clone();
            if let Some(first) = rules.rules.first() {
                duplicated.rules.push(first.clone());
            }
            // A second rule for a key whose targets sort before the first's: vtgates serve
            // the first one stored.
            let mut shadowed = rules.clone();
            if let Some(first) = rules.rules.first() {
                shadowed
                    .rules
                    .push(routing_rule(&first.from_table, "A.shadowed"));
            }
            let mut missing = rules.clone();
            missing.rules.retain(|r| r.from_table != "a@rdonly");
            cells.extend([rules, foreign, duplicated, shadowed, missing]);
        }
        let rollup = build_srv_vschema(&keyspaces(), Some(&base), None, None, None);
        let read_keys: BTreeSet<String> = ["a@replica", "a@rdonly", "S.a@replica", "K.a@rdonly"]
            .iter()
            .map(|k| k.to_string())
            .collect();
        let mut checked = 0;
        let mut stale = 0;
        for global_state in states {
            let global = update_routing_rules(&base, &mine, global_state).rules;
            for cell_rules in &cells {
                for cell_keyspaces in [keyspaces(), BTreeMap::new()] {
                    let current =
                        build_srv_vschema(&cell_keyspaces, Some(cell_rules), None, None, None);
                    let current = Arc::new(current);
                    let difference = CellDifference::new(current.clone(), &rollup, &global);
                    for rule in &cell_rules.rules {
                        assert_eq!(
                            difference.first_rule_targets(&rule.from_table),
                            current.first_rule_targets(&rule.from_table),
                            "the rule served for {} in {cell_rules:?}",
                            rule.from_table
                        );
                    }
                    assert_eq!(difference.first_rule_targets("S.none"), None);
                    for wanted_state in states {
                        let desired = update_routing_rules(&global, &mine, wanted_state).rules;
                        let (owned, wanted) =
                            crate::vitess::routing::owned_rules(&mine, wanted_state);
                        for ignored in [BTreeSet::new(), read_keys.clone()] {
                            let whole = srv_vschema_serves(&current, &rollup, &desired, &ignored);
                            assert_eq!(
                                difference.serves(&owned, &wanted, &ignored),
                                whole,
                                "cell {cell_rules:?}, global {global_state:?}, wanted {wanted_state:?}"
                            );
                            checked += 1;
                            stale += usize::from(!whole);
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 6 * 30 * 2 * 6 * 2);
        // Both answers occur.
        assert!(stale > 0 && stale < checked, "{stale} of {checked}");
    }

    #[test]
    fn any_real_difference_is_stale() {
        let rules = vschema::RoutingRules {
            rules: vec![routing_rule("a", "S.a")],
        };
        let desired = build_srv_vschema(&keyspaces(), Some(&rules), None, None, None);

        let moved = vschema::RoutingRules {
            rules: vec![routing_rule("a", "K.a")],
        };
        let other_target = build_srv_vschema(&keyspaces(), Some(&moved), None, None, None);
        assert!(srv_vschema_is_stale(Some(&other_target), &desired));

        let mut other_keyspace = desired.clone();
        other_keyspace
            .keyspaces
            .insert("X".to_owned(), vschema::Keyspace::default());
        assert!(srv_vschema_is_stale(Some(&other_keyspace), &desired));

        let mut other_mirror = desired.clone();
        other_mirror.mirror_rules = Some(vschema::MirrorRules {
            rules: vec![vschema::MirrorRule {
                from_table: "S.a".to_owned(),
                to_table: "K.a".to_owned(),
                percent: 10.0,
            }],
        });
        assert!(srv_vschema_is_stale(Some(&other_mirror), &desired));

        let mut other_shard = desired.clone();
        other_shard.shard_routing_rules = Some(vschema::ShardRoutingRules {
            rules: vec![vschema::ShardRoutingRule {
                from_keyspace: "K".to_owned(),
                to_keyspace: "S".to_owned(),
                shard: "-80".to_owned(),
            }],
        });
        assert!(srv_vschema_is_stale(Some(&other_shard), &desired));
    }
}

//! How far a topology change reaches: which tables and keyspaces a new value of a shared record
//! changed, so that a write to `RoutingRules`, a keyspace's `VSchema` or a cell's `SrvVSchema`
//! wakes only the workflows whose tables it touched instead of every workflow (with many
//! workflows, each creation or switch would otherwise wake all of them: quadratic work).
//!
//! The tracker keeps the last decoded value of each diffed record seen by one watch. Anything it
//! cannot narrow down reaches everything: the first value after a watch starts, a deletion, a
//! value that does not decode, and a change to a part of the record that is not per table.
//! Fields vtmove does not decode are ignored on both sides: no pass can act on them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost::Message;

use crate::vitess::proto::vschema;

/// Which names a change touched, as far as vtmove reads the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Anything under the key may have changed.
    Whole,
    /// Only the tables with these names (in any keyspace) and these keyspaces as a whole.
    Names {
        /// Tables whose rules or VSchema entries changed.
        tables: BTreeSet<String>,
        /// Keyspaces whose VSchema changed outside its tables (sharding, vindexes, ...).
        keyspaces: BTreeSet<String>,
    },
}

impl Reach {
    fn names() -> Self {
        Reach::Names {
            tables: BTreeSet::new(),
            keyspaces: BTreeSet::new(),
        }
    }

    /// Whether the change can concern a workflow moving `tables` between `keyspaces`.
    pub fn touches<'a>(
        &self,
        mut tables: impl Iterator<Item = &'a str>,
        mut keyspaces: impl Iterator<Item = &'a str>,
    ) -> bool {
        match self {
            Reach::Whole => true,
            Reach::Names {
                tables: changed_tables,
                keyspaces: changed_keyspaces,
            } => {
                tables.any(|t| changed_tables.contains(t))
                    || keyspaces.any(|k| changed_keyspaces.contains(k))
            }
        }
    }
}

/// The last decoded value of a diffed record.
enum Known {
    Rules(BTreeMap<String, Vec<String>>),
    Keyspace(vschema::Keyspace),
    Srv(vschema::SrvVSchema),
}

/// Which record a key (relative to its root) holds, for the records that are diffed.
#[derive(Clone, Copy)]
enum Diffed {
    Rules,
    KeyspaceVSchema,
    Srv,
}

fn diffed(cell: bool, key: &str) -> Option<Diffed> {
    if cell {
        return (key == "SrvVSchema").then_some(Diffed::Srv);
    }
    if key == "RoutingRules" {
        return Some(Diffed::Rules);
    }
    key.strip_prefix("keyspaces/")
        .and_then(|rest| rest.strip_suffix("/VSchema"))
        .filter(|keyspace| !keyspace.is_empty() && !keyspace.contains('/'))
        .map(|_| Diffed::KeyspaceVSchema)
}

/// The diff state of one watch (the global root, or one cell's root).
pub struct ReachTracker {
    cell: bool,
    known: HashMap<String, Known>,
}

impl ReachTracker {
    /// A tracker for the global root (`cell == false`) or a cell's root.
    pub fn new(cell: bool) -> Self {
        Self {
            cell,
            known: HashMap::new(),
        }
    }

    /// Forgets every value: the watch restarted and changes may have been missed.
    pub fn reset(&mut self) {
        self.known.clear();
    }

    /// The reach of `key` (relative to the root) now holding `value`.
    pub fn put(&mut self, key: &str, value: &[u8]) -> Reach {
        let Some(kind) = diffed(self.cell, key) else {
            return Reach::Whole;
        };
        let Some(new) = decode(kind, value) else {
            self.known.remove(key);
            return Reach::Whole;
        };
        let reach = match (self.known.get(key), &new) {
            (Some(Known::Rules(old)), Known::Rules(new)) => {
                let mut reach = Reach::names();
                rule_changes(old, new, &mut reach);
                reach
            }
            (Some(Known::Keyspace(old)), Known::Keyspace(new)) => {
                let keyspace = key
                    .trim_start_matches("keyspaces/")
                    .trim_end_matches("/VSchema");
                let mut reach = Reach::names();
                keyspace_changes(keyspace, Some(old), Some(new), &mut reach);
                reach
            }
            (Some(Known::Srv(old)), Known::Srv(new)) => srv_changes(old, new),
            _ => Reach::Whole,
        };
        self.known.insert(key.to_string(), new);
        reach
    }

    /// The reach of `key` being deleted: everything under it.
    pub fn delete(&mut self, key: &str) -> Reach {
        self.known.remove(key);
        Reach::Whole
    }
}

fn decode(kind: Diffed, value: &[u8]) -> Option<Known> {
    match kind {
        Diffed::Rules => vschema::RoutingRules::decode(value)
            .ok()
            .map(|rules| Known::Rules(rule_map(Some(&rules)))),
        Diffed::KeyspaceVSchema => vschema::Keyspace::decode(value).ok().map(Known::Keyspace),
        Diffed::Srv => vschema::SrvVSchema::decode(value).ok().map(Known::Srv),
    }
}

fn rule_map(rules: Option<&vschema::RoutingRules>) -> BTreeMap<String, Vec<String>> {
    rules
        .into_iter()
        .flat_map(|r| &r.rules)
        .map(|r| (r.from_table.clone(), r.to_tables.clone()))
        .collect()
}

/// The table a rule's `from_table` (`[ks.]table[@type]`) is about.
fn rule_table(from_table: &str) -> &str {
    let name = from_table
        .rsplit_once('@')
        .map_or(from_table, |(name, _)| name);
    name.split_once('.').map_or(name, |(_, table)| table)
}

fn rule_changes(
    old: &BTreeMap<String, Vec<String>>,
    new: &BTreeMap<String, Vec<String>>,
    reach: &mut Reach,
) {
    let Reach::Names { tables, .. } = reach else {
        return;
    };
    for from in old.keys().chain(new.keys()) {
        if old.get(from) != new.get(from) {
            tables.insert(rule_table(from).to_string());
        }
    }
}

fn keyspace_changes(
    keyspace: &str,
    old: Option<&vschema::Keyspace>,
    new: Option<&vschema::Keyspace>,
    reach: &mut Reach,
) {
    let Reach::Names { tables, keyspaces } = reach else {
        return;
    };
    let (Some(old), Some(new)) = (old, new) else {
        if old != new {
            keyspaces.insert(keyspace.to_string());
        }
        return;
    };
    for name in old.tables.keys().chain(new.tables.keys()) {
        if old.tables.get(name) != new.tables.get(name) {
            tables.insert(name.clone());
        }
    }
    if old.sharded != new.sharded
        || old.vindexes != new.vindexes
        || old.require_explicit_routing != new.require_explicit_routing
        || old.foreign_key_mode != new.foreign_key_mode
        || old.multi_tenant_spec != new.multi_tenant_spec
    {
        keyspaces.insert(keyspace.to_string());
    }
}

fn srv_changes(old: &vschema::SrvVSchema, new: &vschema::SrvVSchema) -> Reach {
    if old.shard_routing_rules != new.shard_routing_rules
        || old.keyspace_routing_rules != new.keyspace_routing_rules
        || old.mirror_rules != new.mirror_rules
    {
        return Reach::Whole;
    }
    let mut reach = Reach::names();
    rule_changes(
        &rule_map(old.routing_rules.as_ref()),
        &rule_map(new.routing_rules.as_ref()),
        &mut reach,
    );
    for keyspace in old.keyspaces.keys().chain(new.keyspaces.keys()) {
        keyspace_changes(
            keyspace,
            old.keyspaces.get(keyspace),
            new.keyspaces.get(keyspace),
            &mut reach,
        );
    }
    reach
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(pairs: &[(&str, &str)]) -> Vec<u8> {
        vschema::RoutingRules {
            rules: pairs
                .iter()
                .map(|(from, to)| vschema::RoutingRule {
                    from_table: from.to_string(),
                    to_tables: vec![to.to_string()],
                })
                .collect(),
        }
        .encode_to_vec()
    }

    fn keyspace(sharded: bool, tables: &[&str]) -> vschema::Keyspace {
        vschema::Keyspace {
            sharded,
            tables: tables
                .iter()
                .map(|t| (t.to_string(), vschema::Table::default()))
                .collect(),
            ..Default::default()
        }
    }

    fn names(tables: &[&str], keyspaces: &[&str]) -> Reach {
        Reach::Names {
            tables: tables.iter().map(|t| t.to_string()).collect(),
            keyspaces: keyspaces.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn routing_rules_reach_the_tables_whose_rules_changed() {
        let mut tracker = ReachTracker::new(false);
        let before = rules(&[("t1", "a.t1"), ("b.t2@replica", "a.t2")]);
        assert_eq!(tracker.put("RoutingRules", &before), Reach::Whole);
        // t1's rule points elsewhere, t3's is new, t2's is unchanged.
        let after = rules(&[
            ("t1", "b.t1"),
            ("b.t2@replica", "a.t2"),
            ("a.t3@rdonly", "b.t3"),
        ]);
        assert_eq!(
            tracker.put("RoutingRules", &after),
            names(&["t1", "t3"], &[])
        );
        // The same rules in another order reach nothing; a removed rule reaches its table.
        let reordered = rules(&[
            ("a.t3@rdonly", "b.t3"),
            ("b.t2@replica", "a.t2"),
            ("t1", "b.t1"),
        ]);
        assert_eq!(tracker.put("RoutingRules", &reordered), names(&[], &[]));
        let removed = rules(&[("t1", "b.t1"), ("a.t3@rdonly", "b.t3")]);
        assert_eq!(tracker.put("RoutingRules", &removed), names(&["t2"], &[]));
    }

    #[test]
    fn what_cannot_be_narrowed_reaches_everything() {
        let mut tracker = ReachTracker::new(false);
        let value = rules(&[("t1", "a.t1")]);
        tracker.put("RoutingRules", &value);
        assert_eq!(tracker.delete("RoutingRules"), Reach::Whole);
        // After a deletion the next value has nothing to compare with.
        assert_eq!(tracker.put("RoutingRules", &value), Reach::Whole);
        // A value that does not decode, then the first good one after it.
        assert_eq!(tracker.put("RoutingRules", b"\xff\xff"), Reach::Whole);
        assert_eq!(tracker.put("RoutingRules", &value), Reach::Whole);
        // A restarted watch forgets what it saw.
        tracker.reset();
        assert_eq!(tracker.put("RoutingRules", &value), Reach::Whole);
        // Records that are not diffed, and a global key in a cell's tracker.
        assert_eq!(tracker.put("keyspaces/a/shards/0/Shard", b""), Reach::Whole);
        let mut cell = ReachTracker::new(true);
        cell.put("RoutingRules", &value);
        assert_eq!(cell.put("RoutingRules", &value), Reach::Whole);
    }

    #[test]
    fn a_keyspace_vschema_reaches_its_changed_tables_or_the_whole_keyspace() {
        let mut tracker = ReachTracker::new(false);
        let key = "keyspaces/customer/VSchema";
        tracker.put(key, &keyspace(false, &["t1"]).encode_to_vec());
        let added = keyspace(false, &["t1", "t2"]).encode_to_vec();
        assert_eq!(tracker.put(key, &added), names(&["t2"], &[]));
        let resharded = keyspace(true, &["t1", "t2"]).encode_to_vec();
        assert_eq!(tracker.put(key, &resharded), names(&[], &["customer"]));
    }

    #[test]
    fn a_cells_srv_vschema_reaches_rules_tables_and_keyspaces() {
        let mut tracker = ReachTracker::new(true);
        let srv = |rules: &[(&str, &str)], customer: vschema::Keyspace| vschema::SrvVSchema {
            keyspaces: [
                ("commerce".to_string(), keyspace(false, &["t1", "t2"])),
                ("customer".to_string(), customer),
            ]
            .into_iter()
            .collect(),
            routing_rules: Some(
                vschema::RoutingRules::decode(self::rules(rules).as_slice()).expect("rules"),
            ),
            ..Default::default()
        };
        let before = srv(&[("t1", "commerce.t1")], keyspace(false, &["t1"]));
        tracker.put("SrvVSchema", &before.encode_to_vec());
        let after = srv(&[("t1", "customer.t1")], keyspace(false, &["t1", "t2"]));
        assert_eq!(
            tracker.put("SrvVSchema", &after.encode_to_vec()),
            names(&["t1", "t2"], &[])
        );
        let dropped = vschema::SrvVSchema {
            keyspaces: after
                .keyspaces
                .iter()
                .filter(|(name, _)| *name == "commerce")
                .map(|(name, ks)| (name.clone(), ks.clone()))
                .collect(),
            ..after.clone()
        };
        assert_eq!(
            tracker.put("SrvVSchema", &dropped.encode_to_vec()),
            names(&[], &["customer"])
        );
        let shard_rules = vschema::SrvVSchema {
            shard_routing_rules: Some(vschema::ShardRoutingRules {
                rules: vec![vschema::ShardRoutingRule {
                    from_keyspace: "a".into(),
                    to_keyspace: "b".into(),
                    shard: "0".into(),
                }],
            }),
            ..dropped
        };
        assert_eq!(
            tracker.put("SrvVSchema", &shard_rules.encode_to_vec()),
            Reach::Whole
        );
    }

    #[test]
    fn touches_matches_tables_or_keyspaces() {
        let reach = names(&["t1"], &["customer"]);
        assert!(reach.touches(["t1"].into_iter(), ["x", "y"].into_iter()));
        assert!(reach.touches(["t9"].into_iter(), ["commerce", "customer"].into_iter()));
        assert!(!reach.touches(["t9"].into_iter(), ["commerce", "x"].into_iter()));
        assert!(!names(&[], &[]).touches(["t1"].into_iter(), ["customer"].into_iter()));
        assert!(Reach::Whole.touches(std::iter::empty(), std::iter::empty()));
    }
}

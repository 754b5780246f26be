//! The single-writer rule drift Repair follows: what a denied table or a routing rule protects,
//! judged from the structure of the topology, never from who wrote it.
//!
//! A finished move that kept its data (`keepData`, `keepRoutingRules`, or Vitess's
//! `--keep-data --keep-routing-rules`) leaves a denied table on the keyspace that still holds a
//! copy and rules that send queries to the other one, on purpose: they are what keeps that copy
//! from taking writes. Once the workflow is gone nothing *explains* them, but removing them opens
//! a second writable side. So Repair removes only what it can prove protects no single writer:
//!
//! * a **denial** of `T` on keyspace `K` is removable only if routing sends writes of `T` to `K`
//!   (so the denial just makes the writer unavailable) and every other keyspace that holds `T`
//!   denies writes to it on every shard (so `K` stays the only writable copy);
//! * a **routing rule** for `T` is removable only if no keyspace other than the rule's target
//!   holds `T` (a rule that points away from a keyspace that still holds a copy decides which
//!   copy is used);
//!
//! and only when whether each keyspace holds `T` is known: a primary that did not answer makes
//! every finding about `T` protective. Everything else is reported, never repaired.
//!
//! "Holds `T`" means a primary of the keyspace has the table, or its VSchema lists it. Writes are
//! routed with vtgate's rules ([`RoutingView`]): `T` and `X.T` for every keyspace `X`, PRIMARY.

use std::collections::{BTreeMap, BTreeSet};

use crate::vitess::proto::topodata::{self, Shard};
use crate::vitess::proto::vschema;
use crate::vitess::routing::{RoutingView, TableRef, TrafficType};

/// What the single-writer rule is judged from (see the module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriterModel {
    /// The tables the model was observed for.
    pub tables: BTreeSet<String>,
    /// The global routing rules.
    pub routing_rules: vschema::RoutingRules,
    /// Every keyspace's VSchema (a keyspace without one has the default: unsharded, no tables).
    pub vschemas: BTreeMap<String, vschema::Keyspace>,
    /// Every keyspace's shard records.
    pub shards: BTreeMap<String, Vec<Shard>>,
    /// Per table, the keyspaces known to hold it.
    pub holders: BTreeMap<String, BTreeSet<String>>,
    /// Per table, the keyspaces where it could not be told, with why.
    pub unknown: BTreeMap<String, BTreeMap<String, String>>,
}

/// Whether a finding may be repaired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Removing it cannot open a second writable copy.
    Repairable,
    /// It may be what keeps a single writer; the text says why it is kept.
    Kept(String),
}

impl WriterModel {
    /// Whether the model was observed for every table of `tables`.
    pub fn covers<'a>(&self, mut tables: impl Iterator<Item = &'a String>) -> bool {
        tables.all(|t| self.tables.contains(t))
    }

    fn unknown_about(&self, table: &str) -> Option<String> {
        let unknown = self.unknown.get(table).filter(|u| !u.is_empty())?;
        Some(format!(
            "whether {} hold {table} could not be read ({})",
            unknown.keys().cloned().collect::<Vec<_>>().join(", "),
            unknown.values().cloned().collect::<Vec<_>>().join("; ")
        ))
    }

    fn holders_of(&self, table: &str) -> BTreeSet<String> {
        self.holders.get(table).cloned().unwrap_or_default()
    }

    /// Whether every shard of `keyspace` denies PRIMARY writes to `table`.
    pub fn fully_denies(&self, keyspace: &str, table: &str) -> bool {
        self.shards.get(keyspace).is_some_and(|shards| {
            !shards.is_empty()
                && shards.iter().all(|s| {
                    crate::vitess::topo::denied_tables(s, topodata::TabletType::Primary)
                        .iter()
                        .any(|t| t == table)
                })
        })
    }

    /// The keyspaces some name of `table` (`table`, `X.table` for every keyspace `X`) sends
    /// PRIMARY traffic to.
    pub fn write_destinations(&self, table: &str) -> BTreeSet<String> {
        let view = RoutingView::new(Some(&self.routing_rules), &self.vschemas);
        let mut names = vec![table.to_string()];
        names.extend(self.vschemas.keys().map(|ks| format!("{ks}.{table}")));
        names
            .iter()
            .filter_map(|name| TableRef::parse(name))
            .filter_map(|name| view.resolve(&name, TrafficType::Primary).ok())
            .map(|to| to.keyspace.as_str().to_string())
            .collect()
    }

    /// The verdict on a denial of `table` to `tablet_type` tablets of `keyspace`.
    pub fn denial(&self, keyspace: &str, table: &str, tablet_type: i32) -> Verdict {
        if !self.tables.contains(table) {
            return Verdict::Kept(format!("{table} was not examined"));
        }
        if tablet_type != topodata::TabletType::Primary as i32 {
            // A denial to replica or rdonly tablets stops reads only: it protects no writer.
            return Verdict::Repairable;
        }
        if let Some(why) = self.unknown_about(table) {
            return Verdict::Kept(why);
        }
        let writers = self.write_destinations(table);
        if !writers.contains(keyspace) {
            let to = if writers.is_empty() {
                "nowhere".to_string()
            } else {
                writers.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            return Verdict::Kept(format!(
                "writes to {table} are routed to {to}, not to {keyspace}: the denial keeps the \
                 copy in {keyspace} from taking writes"
            ));
        }
        let writable: Vec<String> = self
            .holders_of(table)
            .into_iter()
            .filter(|h| h != keyspace && !self.fully_denies(h, table))
            .collect();
        if !writable.is_empty() {
            return Verdict::Kept(format!(
                "keyspace {} also holds {table} and accepts writes to it: allowing {table} in \
                 {keyspace} would make two writable copies",
                writable.join(", ")
            ));
        }
        Verdict::Repairable
    }

    /// The verdict on the routing rule `from_table → to_tables`.
    pub fn rule(&self, from_table: &str, to_tables: &[String]) -> Verdict {
        let Some((_, table)) = rule_table(from_table) else {
            return Verdict::Kept(format!("rule key {from_table} is not [keyspace.]table"));
        };
        let target = match to_tables {
            [one] => one.split_once('.'),
            _ => None,
        };
        let mut tables = vec![table.to_string()];
        if let Some((_, to_table)) = target
            && to_table != table
        {
            tables.push(to_table.to_string());
        }
        for t in &tables {
            if !self.tables.contains(t) {
                return Verdict::Kept(format!("{t} was not examined"));
            }
            if let Some(why) = self.unknown_about(t) {
                return Verdict::Kept(why);
            }
        }
        let elsewhere: BTreeSet<String> = tables
            .iter()
            .flat_map(|t| self.holders_of(t))
            .filter(|h| target.is_none_or(|(to_ks, _)| to_ks != h))
            .collect();
        if !elsewhere.is_empty() {
            return Verdict::Kept(format!(
                "keyspace {} holds {table}: the rule decides which copy is used",
                elsewhere.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        Verdict::Repairable
    }
}

/// The keyspace qualifier (if any) and the table of a routing-rule key `[ks.]table[@type]`.
pub fn rule_table(from_table: &str) -> Option<(Option<&str>, &str)> {
    let name = from_table.split_once('@').map_or(from_table, |(n, _)| n);
    let (keyspace, table) = match name.split_once('.') {
        Some((ks, t)) => (Some(ks), t),
        None => (None, name),
    };
    (!table.is_empty() && !table.contains('.')).then_some((keyspace, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(denied: &[&str]) -> Shard {
        Shard {
            tablet_controls: if denied.is_empty() {
                vec![]
            } else {
                vec![topodata::shard::TabletControl {
                    tablet_type: topodata::TabletType::Primary as i32,
                    denied_tables: denied.iter().map(|t| t.to_string()).collect(),
                    ..Default::default()
                }]
            },
            ..Default::default()
        }
    }

    fn sharded(tables: &[&str]) -> vschema::Keyspace {
        vschema::Keyspace {
            sharded: true,
            tables: tables
                .iter()
                .map(|t| (t.to_string(), vschema::Table::default()))
                .collect(),
            ..Default::default()
        }
    }

    /// `s` (unsharded) and `k` (sharded, lists `t`), both with one shard.
    fn model(
        rules: &[(&str, &str)],
        holders: &[&str],
        s_denies: bool,
        k_denies: bool,
    ) -> WriterModel {
        let deny = |d: bool| if d { shard(&["t"]) } else { shard(&[]) };
        WriterModel {
            tables: ["t".to_string()].into(),
            routing_rules: vschema::RoutingRules {
                rules: rules
                    .iter()
                    .map(|(f, t)| vschema::RoutingRule {
                        from_table: f.to_string(),
                        to_tables: vec![t.to_string()],
                    })
                    .collect(),
            },
            vschemas: [
                ("s".to_string(), vschema::Keyspace::default()),
                ("k".to_string(), sharded(&["t"])),
            ]
            .into(),
            shards: [
                ("s".to_string(), vec![deny(s_denies)]),
                ("k".to_string(), vec![deny(k_denies)]),
            ]
            .into(),
            holders: [(
                "t".to_string(),
                holders.iter().map(|h| h.to_string()).collect(),
            )]
            .into(),
            unknown: BTreeMap::new(),
        }
    }

    const PRIMARY: i32 = topodata::TabletType::Primary as i32;
    /// The rules a keep-routing-rules Complete leaves (state "writes switched").
    const KEPT: &[(&str, &str)] = &[
        ("t", "k.t"),
        ("t@replica", "k.t"),
        ("k.t@replica", "k.t"),
        ("s.t", "k.t"),
        ("s.t@replica", "k.t"),
    ];

    #[test]
    fn a_kept_source_denial_and_its_rules_are_kept() {
        let m = model(KEPT, &["s", "k"], true, false);
        assert!(matches!(m.denial("s", "t", PRIMARY), Verdict::Kept(_)));
        for (from, to) in KEPT {
            assert!(
                matches!(m.rule(from, &[to.to_string()]), Verdict::Kept(_)),
                "{from}"
            );
        }
    }

    #[test]
    fn a_denial_on_the_writer_is_kept_while_another_copy_takes_writes() {
        // Rules gone, both keyspaces hold t, neither denies: the denial on k is the only
        // protection left (s.t still resolves to s).
        let m = model(&[], &["s", "k"], false, true);
        match m.denial("k", "t", PRIMARY) {
            Verdict::Kept(why) => assert!(why.contains("two writable copies"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Once s denies t everywhere, k is the only writable copy: the denial on k only makes
        // the writer unavailable.
        let m = model(&[], &["s", "k"], true, true);
        assert_eq!(m.denial("k", "t", PRIMARY), Verdict::Repairable);
    }

    #[test]
    fn a_denial_where_writes_are_not_routed_is_kept() {
        // Every name of t is routed to k.
        let rules = &[("t", "k.t"), ("s.t", "k.t")];
        let m = model(rules, &["s"], true, false);
        match m.denial("s", "t", PRIMARY) {
            Verdict::Kept(why) => assert!(why.contains("routed to k"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_only_copy_may_be_allowed_and_rules_pointing_at_it_removed() {
        let m = model(&[("t@replica", "s.t")], &["s"], true, false);
        assert_eq!(m.denial("s", "t", PRIMARY), Verdict::Repairable);
        assert_eq!(m.rule("t@replica", &["s.t".into()]), Verdict::Repairable);
        // No copy anywhere: nothing to protect.
        let m = model(&[("t", "k.t")], &[], false, false);
        assert_eq!(m.rule("t", &["k.t".into()]), Verdict::Repairable);
    }

    #[test]
    fn a_rule_pointing_away_from_a_copy_is_kept() {
        let m = model(&[("s.t", "k.t")], &["s"], false, false);
        assert!(matches!(m.rule("s.t", &["k.t".into()]), Verdict::Kept(_)));
        // A rule disabling the table (no target) while a copy exists.
        assert!(matches!(m.rule("s.t", &[]), Verdict::Kept(_)));
    }

    #[test]
    fn unknown_holders_keep_everything_about_the_table() {
        let mut m = model(&[], &["s"], true, false);
        m.unknown
            .entry("t".into())
            .or_default()
            .insert("k".into(), "primary zone1-200 unreachable".into());
        assert!(matches!(m.denial("s", "t", PRIMARY), Verdict::Kept(_)));
        assert!(matches!(m.rule("t", &["s.t".into()]), Verdict::Kept(_)));
        // A table the model was not observed for is never judged repairable.
        assert!(matches!(m.denial("s", "u", PRIMARY), Verdict::Kept(_)));
    }

    #[test]
    fn replica_denials_protect_no_writer() {
        let m = model(&[], &["s", "k"], false, false);
        assert_eq!(
            m.denial("s", "t", topodata::TabletType::Replica as i32),
            Verdict::Repairable
        );
    }

    #[test]
    fn rule_keys_parse() {
        assert_eq!(rule_table("t"), Some((None, "t")));
        assert_eq!(rule_table("t@replica"), Some((None, "t")));
        assert_eq!(rule_table("ks.t@rdonly"), Some((Some("ks"), "t")));
        assert_eq!(rule_table("a.b.c"), None);
        assert_eq!(rule_table("ks."), None);
    }
}

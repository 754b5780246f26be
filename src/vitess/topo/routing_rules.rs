//! Which keyspaces a routing-rule change affects, so a change can be refused unless vtmove holds
//! the lock of every one of them (invariant I3).
//!
//! A rule maps `from_table` (`table`, `table@<type>`, `ks.table` or `ks.table@<type>`) to
//! `to_tables` (`ks.table`). A changed rule affects the keyspace its `from_table` names, if
//! qualified, and every keyspace its old and new targets name. An unqualified `from_table`
//! therefore belongs to the keyspaces of its targets.

use std::collections::{BTreeMap, BTreeSet};

use crate::vitess::proto::vschema::RoutingRules;

use super::error::{Result, TopoError};

/// The keyspace a qualified rule table names (`ks` in `ks.table@replica`), if any.
pub fn rule_keyspace(table: &str) -> Option<&str> {
    table.split_once('.').map(|(ks, _)| ks)
}

/// Every `from_table` with all the target lists given for it, in rule order.
fn by_source(rules: &RoutingRules) -> BTreeMap<&str, Vec<&[String]>> {
    let mut map: BTreeMap<&str, Vec<&[String]>> = BTreeMap::new();
    for rule in &rules.rules {
        map.entry(rule.from_table.as_str())
            .or_default()
            .push(rule.to_tables.as_slice());
    }
    map
}

/// The keyspaces affected by changing `old` into `new`. Errors when a changed rule has a target
/// that names no keyspace, since its owner cannot be determined (and vtgate would reject it).
pub fn affected_keyspaces(old: &RoutingRules, new: &RoutingRules) -> Result<BTreeSet<String>> {
    let old_map = by_source(old);
    let new_map = by_source(new);
    let sources: BTreeSet<&str> = old_map.keys().chain(new_map.keys()).copied().collect();
    let mut affected = BTreeSet::new();
    for source in sources {
        let before = old_map.get(source);
        let after = new_map.get(source);
        if before == after {
            continue;
        }
        if let Some(ks) = rule_keyspace(source) {
            affected.insert(ks.to_string());
        }
        let targets = before
            .into_iter()
            .chain(after)
            .flatten()
            .flat_map(|list| list.iter());
        for target in targets {
            match rule_keyspace(target) {
                Some(ks) if !ks.is_empty() => {
                    affected.insert(ks.to_string());
                }
                _ => {
                    return Err(TopoError::InvalidArgument(format!(
                        "routing rule {source:?} has target {target:?} without a keyspace; cannot tell which keyspace lock covers it"
                    )));
                }
            }
        }
    }
    Ok(affected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vitess::proto::vschema::RoutingRule;

    fn rules(pairs: &[(&str, &[&str])]) -> RoutingRules {
        RoutingRules {
            rules: pairs
                .iter()
                .map(|(from, to)| RoutingRule {
                    from_table: from.to_string(),
                    to_tables: to.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unchanged_rules_affect_nothing() {
        let r = rules(&[("t", &["src.t"]), ("tgt.t", &["src.t"])]);
        assert!(affected_keyspaces(&r, &r).unwrap().is_empty());
    }

    #[test]
    fn switching_a_table_affects_both_keyspaces() {
        let old = rules(&[
            ("t", &["src.t"]),
            ("tgt.t", &["src.t"]),
            ("src.t", &["src.t"]),
        ]);
        let new = rules(&[
            ("t", &["tgt.t"]),
            ("tgt.t", &["tgt.t"]),
            ("src.t", &["tgt.t"]),
        ]);
        assert_eq!(
            affected_keyspaces(&old, &new).unwrap(),
            set(&["src", "tgt"])
        );
    }

    #[test]
    fn adding_and_removing_rules() {
        let empty = RoutingRules::default();
        let new = rules(&[("t@replica", &["tgt.t"])]);
        assert_eq!(affected_keyspaces(&empty, &new).unwrap(), set(&["tgt"]));
        assert_eq!(affected_keyspaces(&new, &empty).unwrap(), set(&["tgt"]));
        let qualified = rules(&[("other.t", &["tgt.t"])]);
        assert_eq!(
            affected_keyspaces(&empty, &qualified).unwrap(),
            set(&["other", "tgt"])
        );
    }

    #[test]
    fn unqualified_target_is_refused() {
        let empty = RoutingRules::default();
        assert!(affected_keyspaces(&empty, &rules(&[("t", &["t"])])).is_err());
        // ... but only when that rule changes.
        let r = rules(&[("t", &["t"]), ("u", &["a.u"])]);
        let changed = rules(&[("t", &["t"]), ("u", &["b.u"])]);
        assert_eq!(affected_keyspaces(&r, &changed).unwrap(), set(&["a", "b"]));
    }
}
